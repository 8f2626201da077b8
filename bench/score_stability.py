"""How much the scores of one correct recitation move under changes a learner never hears.

    .venv/bin/python bench/score_stability.py [--per-group 8] [--json out.json]

A learner who records the same ayah twice in the same way expects the same scores. Every take
differs a little: where recording starts, the level, the microphone's noise, the browser's
resampling. Each dev recording labelled correct (Alafasy: professional; RetaSy: non-native
learners) is analysed as it is and with each of those changes; printed per group: the mean
spread (max - min) of each score over the variants, the share of recordings whose overall score
spreads 3 points or more, and the share of variants whose overall score differs from the
recording's own.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

# (group, what its reciter column holds): recordings of correct recitations only
GROUPS = {"Alafasy": ("alafasy",), "RetaSy": ("retasy", "label=correct")}
SCORES = ("overall", "content", "pronunciation", "tajweed")


def variants(audio: np.ndarray) -> dict[str, np.ndarray]:
    import soxr

    rng = np.random.default_rng(0)
    silence = lambda ms: np.zeros(ms * 16, np.float32)  # noqa: E731
    return {"as is": audio,
            "150 ms more silence before": np.concatenate([silence(150), audio]),
            "700 ms more silence before": np.concatenate([silence(700), audio]),
            "30 ms cut at the start": audio[480:],
            "400 ms more silence after": np.concatenate([audio, silence(400)]),
            "half as loud": audio * 0.5,
            "1.8x as loud": np.clip(audio * 1.8, -1, 1),
            "through 48 kHz and back": soxr.resample(soxr.resample(audio, 16000, 48000), 48000, 16000),
            "noise at -50 dBFS": audio + 0.003 * rng.standard_normal(audio.size).astype(np.float32),
            "other noise at -50 dBFS": audio + 0.003 * rng.standard_normal(audio.size).astype(np.float32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--manifest", type=Path, default=root / "manifest.csv")
    parser.add_argument("--per-group", type=int, default=8, help="recordings per group (the first N of one ayah)")
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah import Engine
    from iqrah.audio import decode_audio
    from iqrah.evaluate.manifest import read_manifest

    engine, t0 = Engine(), time.time()
    rows = [r for r in read_manifest(args.manifest, "dev") if r.ayah == r.ayah_end]
    out: dict = {"model": None, "groups": {}}
    for group, needles in GROUPS.items():
        chosen = [r for r in rows if all(n in r.reciter.lower() for n in needles)][: args.per_group]
        spreads, moved, n_variants, worst = defaultdict(list), 0, 0, []
        for rec in chosen:
            scores = {}
            for name, audio in variants(decode_audio(rec.path)).items():
                report = engine.analyze(audio.astype(np.float32), rec.spec)
                out["model"] = report.model
                scores[name] = report.scores
            for s in SCORES:
                values = [getattr(v, s) for v in scores.values()]
                spreads[s].append(max(values) - min(values))
            own = scores["as is"].overall
            moved += sum(v.overall != own for k, v in scores.items() if k != "as is")
            n_variants += len(scores) - 1
            worst.append((round(spreads["overall"][-1], 1), rec.path.name,
                          sorted({v.overall for v in scores.values()})))
        g = {"recordings": len(chosen),
             "mean_spread": {s: round(float(np.mean(v)), 2) for s, v in spreads.items()},
             "spread_3_or_more": round(float(np.mean(np.array(spreads["overall"]) >= 3)), 3),
             "variants_moved": round(moved / max(n_variants, 1), 3),
             "widest": sorted(worst, reverse=True)[:3]}
        out["groups"][group] = g
        print(f"{group}: {g['recordings']} recordings x {len(variants(np.zeros(16000, np.float32)))} variants; "
              "mean spread " + ", ".join(f"{s} {v}" for s, v in g["mean_spread"].items())
              + f"; overall spread >= 3 points: {g['spread_3_or_more'] * 100:.0f} %; variants whose overall "
              f"differs from the recording's own: {g['variants_moved'] * 100:.0f} %")
        for spread, name, values in g["widest"]:
            print(f"    {name}: {values}")
    out["seconds"] = round(time.time() - t0, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
