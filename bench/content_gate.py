"""The content gate: how often a take is judged as the ayah chosen, when it is and when it is not.

    .venv/bin/python bench/content_gate.py [--split dev] [--limit N] [--json out.json]

Every single-ayah recording of the split is analysed three times: as its own ayah (a correct
take: it should be judged), as the next ayah of its surah (the previous one for a last ayah: the
wrong-ayah mistake a learner makes), and as an ayah drawn at random (seed 0). Printed per
reciter group: the share judged as the ayah chosen (the gate passed) in each case, and the PER
percentiles against the ayah chosen. Own: higher is better; next and random: lower is better.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def group_of(reciter: str) -> str:
    for name in ("Alafasy", "RetaSy", "TLOG"):
        if name.lower() in reciter.lower():
            return name
    return reciter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--manifest", type=Path, default=root / "manifest.csv")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah.acoustic.registry import load_model
    from iqrah.analyze import AnalyzeSettings, judge
    from iqrah.audio import AudioError, decode_audio
    from iqrah.evaluate.manifest import read_manifest
    from iqrah.quran.text import SURAH_COUNT, ayah_count

    model, settings, rng, t0 = load_model(None, threads=2), AnalyzeSettings(), random.Random(0), time.time()
    rows = [r for r in read_manifest(args.manifest, args.split) if r.ayah == r.ayah_end][: args.limit]
    results: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rec in rows:
        try:
            audio = decode_audio(rec.path)
        except AudioError:
            continue
        other = rec.ayah + 1 if rec.ayah < ayah_count(rec.surah) else rec.ayah - 1
        surah = rng.randint(1, SURAH_COUNT)
        claims = {"own": f"{rec.surah}:{rec.ayah}", "next": f"{rec.surah}:{other}",
                  "random": f"{surah}:{rng.randint(1, ayah_count(surah))}"}
        for case, spec in claims.items():
            if case != "own" and spec == claims["own"]:
                continue
            judged, _, _ = judge(audio, spec, settings, model)
            results[group_of(rec.reciter)][case].append((judged.content.per, judged.matches))
    out = {"model": f"{model.name}-{model.version}", "split": args.split, "groups": {}}
    for group, cases in sorted(results.items()):
        out["groups"][group] = {}
        line = []
        for case, values in cases.items():
            per = np.array([v[0] for v in values])
            judged = float(np.mean([v[1] for v in values]))
            out["groups"][group][case] = {"takes": len(values), "judged_as_the_ayah": round(judged, 4),
                                          "per_p5_p50_p95": [round(float(x), 3) for x in np.percentile(per, [5, 50, 95])]}
            line.append(f"{case} {judged * 100:.1f} % of {len(values)}")
        print(f"{group}: judged as the ayah chosen: " + ", ".join(line))
    out["seconds"] = round(time.time() - t0, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
