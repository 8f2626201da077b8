"""Prosody checks on real recordings with planted changes, each recording its own reference.

    .venv/bin/python bench/prosody_planted.py [--limit 12] [--json out.json]

For single-ayah dev recordings by Alafasy: the recording is measured as a reference reciter
(``iqrah.reciters.features``), then compared with (1) itself, (2) itself time-stretched 1.25x
with the pitch kept (WSOLA), (3) itself shifted up 3 semitones (stretched then resampled), (4)
itself with its pitch contour flattened to its median. Printed: the share of words with a tempo
finding (expected: none on 1, most on 2), with a melody finding (expected: none on 3, key
invariance), the mean melody score (lower on 4), and, for a stream fed the original in 100 ms
chunks with the same reciter, the share of words whose live prosody findings equal the final
report's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--manifest", type=Path, default=root / "manifest.csv")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--json")
    args = parser.parse_args()

    import soxr

    from iqrah.acoustic.registry import load_model
    from iqrah.analyze import analyze
    from iqrah.assess.prosody import Contour, compare, spans_of
    from iqrah.audio import decode_audio
    from iqrah.audio.pitch import estimate_pitch
    from iqrah.config import AnalyzeSettings
    from iqrah.evaluate.manifest import read_manifest
    from iqrah.evaluate.tsm import time_stretch
    from iqrah.reciters import measure
    from iqrah.stream import StreamingAnalyzer

    model = load_model(threads=1)
    records = [r for r in read_manifest(args.manifest, "dev")
               if "Alafasy" in r.reciter and r.ayah == r.ayah_end and r.ayah > 1 and 3 < r.duration_s < 20]
    records = records[: args.limit]
    factor = 2 ** (3 / 12)
    totals = {k: [0, 0] for k in ("tempo_same", "tempo_stretched", "melody_shifted", "live_equal")}
    melody = {"original": [], "flattened": []}
    start = time.time()
    for rec in records:
        audio = decode_audio(rec.path)
        spec = f"{rec.surah}:{rec.ayah}"
        entry = measure(audio, spec, model, AnalyzeSettings(basmala="no"))
        if isinstance(entry, str):  # not heard as this ayah: no reference
            continue

        def versus(x, change=None):
            report = analyze(x, spec, AnalyzeSettings(basmala="no"), model)
            contour = Contour.from_pitch(estimate_pitch(x))
            return compare("self", *spans_of(report.words), change(contour) if change else contour, entry)

        def count(result, key, kinds):
            totals[key][0] += sum(any(f in kinds for f in w.findings) for w in result.words)
            totals[key][1] += len(result.words)

        def flatten(contour):
            f0 = contour.f0.copy()
            voiced = np.isfinite(f0)
            f0[voiced] = np.median(f0[voiced])
            return replace(contour, f0=f0)

        same = versus(audio)
        count(same, "tempo_same", ("rushed", "slow"))
        count(versus(time_stretch(audio, 1.25)), "tempo_stretched", ("rushed", "slow"))
        shifted = soxr.resample(time_stretch(audio, factor), 16000 * factor, 16000).astype(np.float32)
        count(versus(shifted), "melody_shifted", ("falls_where_reference_rises", "rises_where_reference_falls"))
        melody["original"].append(same.scores["melody"])
        melody["flattened"].append(versus(audio, flatten).scores["melody"])
        stream = StreamingAnalyzer(spec, AnalyzeSettings(basmala="no"), model, reciter=("self", entry))
        events = []
        for i in range(0, audio.size, 1600):
            events += stream.feed(audio[i:i + 1600])
        events += stream.flush()
        live = {e.data["index"]: e.data["prosody"]["findings"] for e in events if e.type == "word" and e.data["prosody"]}
        final = {w["index"]: w["findings"] for w in stream.finish()[-1].data["prosody"]["words"]}
        totals["live_equal"][0] += sum(live[i] == final[i] for i in live if i in final)
        totals["live_equal"][1] += sum(i in final for i in live)
        print(f"{spec}: {len(same.words)} words", flush=True)
    rates = {k: round(a / b, 3) if b else None for k, (a, b) in totals.items()}
    out = {"files": len(melody["original"]), "words": totals, "rates": rates,
           "melody_score": {k: round(float(np.mean(v)), 1) if v else None for k, v in melody.items()},
           "seconds": round(time.time() - start, 1)}
    print(f"\n{out['files']} recordings; words with a tempo finding: itself {rates['tempo_same']:.1%}, "
          f"stretched 1.25x {rates['tempo_stretched']:.1%}; with a melody finding shifted +3 st "
          f"{rates['melody_shifted']:.1%}; melody score {out['melody_score']['original']} -> flattened "
          f"{out['melody_score']['flattened']}; live prosody findings equal to the final's {rates['live_equal']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
