"""Speed of CTC forced alignment (numba Viterbi) for growing inputs; prints a table and JSON.

    .venv/bin/python bench/align_speed.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from iqrah.align import forced_align

SIZES = [(500, 100), (1500, 300), (3000, 600), (10_000, 2_000), (20_000, 4_000)]


def log_softmax(x: np.ndarray) -> np.ndarray:
    return (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    forced_align(log_softmax(rng.standard_normal((50, 43))), [1, 2, 3])  # compile once
    rows = []
    print(f"{'frames':>8} {'tokens':>8} {'audio (40 ms frames)':>22} {'median ms':>10} {'min ms':>8}")
    for frames, tokens in SIZES:
        log_probs = log_softmax(rng.standard_normal((frames, 43)))
        ids = rng.integers(1, 43, tokens)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            forced_align(log_probs, ids)
            times.append((time.perf_counter() - start) * 1000)
        row = {"frames": frames, "tokens": tokens, "median_ms": round(float(np.median(times)), 1),
               "min_ms": round(min(times), 1)}
        rows.append(row)
        print(f"{frames:>8} {tokens:>8} {frames * 0.04 / 60:>18.1f} min {row['median_ms']:>10} {row['min_ms']:>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "forced_align", "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
