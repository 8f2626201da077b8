"""End-to-end latency of ``iqrah analyze`` per stage on a real ~15 s ayah (bundled model).

    .venv/bin/python bench/analyze_latency.py [--file F --ayah S:A] [--repeat 5] [--json out.json]

Decoding from the compressed file is included, as for a user's upload. Numbers are medians
over the repeats, after one warm-up run (model load and numba compilation are not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

DEFAULT_FILE = "dev/offline-tarteel-test-corpus-v3-ea-alafasy-005058.opus"  # 5:58, 15.4 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--file", type=Path, default=root / DEFAULT_FILE)
    parser.add_argument("--ayah", default="5:58")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all cores)")
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah.acoustic.onnx_model import OnnxAcousticModel
    from iqrah.analyze import analyze

    start = time.perf_counter()
    model = OnnxAcousticModel(threads=args.threads)
    load_ms = (time.perf_counter() - start) * 1000
    data = args.file.read_bytes()
    analyze(data, args.ayah, model=model)  # warm-up
    runs, totals = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = analyze(data, args.ayah, model=model)
        totals.append((time.perf_counter() - start) * 1000)
        runs.append(report.timings_ms)
    stages = {name: round(statistics.median(r.get(name, 0.0) for r in runs), 1) for name in runs[0]}
    result = {"file": str(args.file), "ayah": args.ayah, "audio_s": report.duration_s,
              "model_load_ms": round(load_ms, 1), "stages_ms": stages,
              "total_ms": round(statistics.median(totals), 1), "threads": args.threads}
    print(f"{args.file.name} ({args.ayah}, {report.duration_s:.1f} s of audio), median of {args.repeat}:")
    for name, ms in stages.items():
        print(f"  {name:<10} {ms:8.1f} ms")
    print(f"  {'total':<10} {result['total_ms']:8.1f} ms   (model load once: {load_ms:.0f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
