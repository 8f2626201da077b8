"""How late a model places word boundaries against a reference model, on the train split.

    PYTHONPATH=train python -m iqrah_train.delay --model runs/x/export/int8.onnx [--reference OLD.onnx] [--files 200]

A CTC model's spikes may fall a little after the sounds they stand for (where they fall is
learnt). Both models align the same train recordings (<= 20 s, whose greedy PER under the
reference model is at most 20 %) to their reference phonemes; the mean of the signed
differences of word starts and of word ends, averaged, is the delay to write into the new
model's card (``export.py --delay-seconds``). The default reference is the bundled model, whose
boundaries have no signed bias against quran-align's on dev (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="ONNX file with its card beside it")
    ap.add_argument("--reference", type=Path, default=None, help="ONNX file (default: the bundled model)")
    ap.add_argument("--manifest", type=Path, default=Path("../shared/recitations/manifest.csv"))
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from iqrah.acoustic.onnx_model import OnnxAcousticModel
    from iqrah.align import AlignmentError
    from iqrah.align.words import align_reference
    from iqrah.audio import AudioError, decode_audio
    from iqrah.evaluate.manifest import read_manifest
    from iqrah.evaluate.metrics import phoneme_error_rate

    ref_model = OnnxAcousticModel(args.reference, threads=1)
    model = OnnxAcousticModel(args.model, threads=1)
    recs = read_manifest(args.manifest, "train")
    random.Random(args.seed).shuffle(recs)
    starts, ends, files = [], [], 0
    for rec in recs:
        if files >= args.files:
            break
        try:
            audio = decode_audio(rec.path)
        except AudioError:
            continue
        if audio.size > 20 * 16000:
            continue
        try:
            candidates = rec.references()
        except ValueError:  # a partial-ayah text the phonetizer cannot handle (prep.py skips them too)
            continue
        lp_ref, lp = ref_model.log_probs(audio), model.log_probs(audio)
        hyp = ref_model.vocab.greedy(lp_ref)
        reference = min(candidates, key=lambda r: phoneme_error_rate(hyp, r.phonemes))
        if phoneme_error_rate(hyp, reference.phonemes) > 0.2:
            continue
        try:
            a = align_reference(lp_ref, reference, ref_model.vocab, ref_model.frame_seconds, audio=audio)
            b = align_reference(lp, reference, model.vocab, model.frame_seconds, audio=audio)
        except AlignmentError:
            continue
        files += 1
        for wa, wb in zip(a.words, b.words):
            starts.append(wb.start - wa.start)
            ends.append(wb.end - wa.end)
    s, e = np.array(starts), np.array(ends)
    out = {"files": files, "words": int(s.size), "start_mean_s": round(float(s.mean()), 4),
           "end_mean_s": round(float(e.mean()), 4), "start_median_s": round(float(np.median(s)), 4),
           "end_median_s": round(float(np.median(e)), 4),
           "delay_seconds": round(float((s.mean() + e.mean()) / 2), 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
