"""Measure how long professional reciters hold madd, ghunnah and shadda units, in counts as the
validators measure them, and how far a qalqalah's release rises over its closure (dB), on the
TRAIN split (never dev), to set the validators' constants.

    .venv/bin/python bench/calibrate_durations.py [--files 150] [--json out.json] [--ending-in-qalqalah]

Prints, per rule kind, the median and spread of measured counts next to the expected harakat
(dB for qalqalah), and the per-file free-decoding PER distribution (for the content gate); the
JSON also holds every measured value.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--manifest", type=Path, default=root / "manifest.csv")
    parser.add_argument("--files", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    parser.add_argument("--model", default=None, help="an .onnx file (default: the bundled model)")
    parser.add_argument("--ending-in-qalqalah", action="store_true",
                        help="only recordings whose last sound is a qalqalah kubra (how the validator "
                             "measures the release at a recording's end)")
    args = parser.parse_args()

    from iqrah.acoustic.registry import load_model
    from iqrah.align import AlignmentError
    from iqrah.align.words import align_reference
    from iqrah.assess.content import Heard, check_content
    from iqrah.assess.findings import AssessmentContext, stops_after
    from iqrah.assess.qalqalah import burst_db
    from iqrah.assess.shadda import single_letter_seconds
    from iqrah.audio import AudioError, decode_audio
    from iqrah.evaluate.manifest import read_manifest

    model = load_model(args.model)
    rows = [r for r in read_manifest(args.manifest, "train")
            if r.kind.startswith("professional") and 3 < r.duration_s < 20]
    random.Random(args.seed).shuffle(rows)
    if args.ending_in_qalqalah:
        rows = [r for r in rows if not r.text and any(
            rule.kind == "kubra" for rule in r.references()[0].units[-1].rules)]
    counts: dict[str, list[float]] = defaultdict(list)
    pers: list[float] = []
    for rec in rows[: args.files]:
        try:
            audio = decode_audio(rec.path)
            candidates = rec.references()
        except (AudioError, ValueError):
            continue
        log_probs = model.log_probs(audio)
        heard = Heard.from_log_probs(log_probs, model.vocab)
        reference, content = min(((r, check_content(heard, r, model.vocab)) for r in candidates),
                                 key=lambda pair: pair[1].per)
        pers.append(content.per)
        if content.per > 0.25:
            continue  # a poor decoding would measure the aligner, not the reciter
        try:
            aligned = align_reference(log_probs, reference, model.vocab, model.frame_seconds, audio=audio)
        except AlignmentError:
            continue
        ctx = AssessmentContext(reference, aligned, audio, 16000)
        singles, overall = single_letter_seconds(ctx)
        for unit, _ in ctx.units_with("shadda"):
            single = singles.get(unit.phonemes[0], overall)
            if single and np.isfinite(aligned.core[unit.index]):
                counts["shadda_ratio"].append(float(aligned.core[unit.index]) / single)
        for unit, rule in ctx.units_with("qalqalah"):  # the release burst, in dB over the closure
            burst = burst_db(ctx, unit.index)
            if burst is not None:
                counts[f"qalqalah:{rule.kind}"].append(burst)
        for unit in reference.units[:-1]:  # the last unit runs into silence
            for rule in unit.rules:
                if rule.family in ("madd", "ghunnah", "shadda"):
                    key = f"{rule.family}:{rule.harakat or ''}" if rule.family == "madd" else rule.family
                    measured = ctx.counts(unit.index, core=rule.family != "madd")
                    if rule.family == "ghunnah":
                        counts[f"ghunnah:{rule.kind}"].append(measured)
                    if rule.family == "madd" and rule.kind in ("aared", "mottasel_waqf"):
                        key += ":stop"  # before a stop the reciter may choose 2, 4 or 6
                    elif rule.family == "madd" and stops_after(ctx, unit):
                        key += ":pause"  # the reciter stopped here inside the ayah: a stop too
                    counts[key].append(measured)
    result = {"files": len(pers), "per": {"median": float(np.median(pers)), "p90": float(np.percentile(pers, 90)),
                                          "p99": float(np.percentile(pers, 99))}, "counts": {}}
    print(f"{len(pers)} train files; free-decoding PER median {result['per']['median']:.3f}, "
          f"p90 {result['per']['p90']:.3f}, p99 {result['per']['p99']:.3f}")
    for key, values in sorted(counts.items()):
        v = np.array(values)
        stats = {"n": int(v.size), "median": round(float(np.median(v)), 3), "std": round(float(v.std()), 3),
                 **{f"p{q}": round(float(np.percentile(v, q)), 3) for q in (1, 2, 5, 10, 90, 95, 98, 99)},
                 "values": sorted(round(float(x), 3) for x in v)}
        result["counts"][key] = stats
        print(f"  {key:<10} n={stats['n']:5d} median {stats['median']:.2f} counts; p1 {stats['p1']:.2f} "
              f"p5 {stats['p5']:.2f} p10 {stats['p10']:.2f} p90 {stats['p90']:.2f} p95 {stats['p95']:.2f} "
              f"p99 {stats['p99']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
