"""``iqrah model validate``: does a converted model (ONNX, INT8, FP16) still hear what its source did?

On the recordings of a manifest split: greedy PER of each model against the reference phonemes,
per-sifa error (greedy decoding of each sifa head against the reference's sifat, one label per
phoneme group) where both models have sifat heads, agreement of their outputs (largest absolute
difference of log-probabilities, share of frames with the same best token), and file sizes.
The candidate fails if its PER is more than ``max_per_rise`` (2 percentage points) worse.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
from Levenshtein import distance

from ..acoustic.base import AcousticModel
from ..acoustic.vocab import best_path, collapse_runs, sifa_labels
from ..audio import AudioError, decode_audio
from .manifest import read_manifest
from .metrics import phoneme_error_rate


def sifa_errors(sifat: dict[str, np.ndarray], reference) -> dict[str, tuple[int, int]]:
    """(edits, length) per level: decoded sifa labels against the reference's, one per unit."""
    out = {}
    for level, log_probs in sifat.items():
        labels = sifa_labels(level)
        expected = "".join(chr(65 + labels.index(u.sifat[level])) for u in reference.units)
        heard = "".join(chr(64 + int(i)) for i in best_path(log_probs)[0])
        out[level] = (distance(heard, expected), len(expected))
    return out


def validate(reference_model: AcousticModel, candidate: AcousticModel, manifest: str | Path, *,
             split: str | None = "dev", limit: int | None = None, max_per_rise: float = 0.02,
             sizes: dict[str, int] | None = None, progress=None) -> dict:
    totals = {"reference": [0, 0], "candidate": [0, 0]}
    sifat_totals: dict[str, dict[str, list[int]]] = {"reference": {}, "candidate": {}}
    max_diff, same, frames, files = 0.0, 0, 0, 0
    for rec in read_manifest(manifest, split)[:limit]:
        try:
            audio = decode_audio(rec.path)
        except AudioError:
            continue
        files += 1
        outputs = {}
        for role, model in (("reference", reference_model), ("candidate", candidate)):
            lp = model.log_probs(audio)
            heard = model.vocab.greedy(lp)
            ref = min(rec.references(), key=lambda r: phoneme_error_rate(heard, r.phonemes))
            expected = collapse_runs(ref.phonemes)
            totals[role][0] += distance(collapse_runs(heard), expected)
            totals[role][1] += len(expected)
            if model.has_sifat:
                for level, (edits, length) in sifa_errors(model.log_probs_and_sifat(audio)[1], ref).items():
                    acc = sifat_totals[role].setdefault(level, [0, 0])
                    acc[0] += edits
                    acc[1] += length
            outputs[role] = lp
        a, b = outputs["reference"], outputs["candidate"]
        n = min(len(a), len(b))
        max_diff = max(max_diff, float(np.abs(a[:n] - b[:n]).max()))
        same += int((a[:n].argmax(1) == b[:n].argmax(1)).sum())
        frames += n
        if progress:
            progress(rec)
    per = {role: round(e / max(n, 1), 4) for role, (e, n) in totals.items()}
    rise = per["candidate"] - per["reference"]
    return {
        "files": files, "per": per, "per_rise_pp": round(rise * 100, 2),
        "sifat_error": {role: {lvl: round(e / max(n, 1), 4) for lvl, (e, n) in levels.items()}
                        for role, levels in sifat_totals.items() if levels},
        "agreement": {"max_abs_logprob_diff": round(max_diff, 5),
                      "argmax_agreement": round(same / max(frames, 1), 4)},
        "sizes_bytes": sizes or {}, "max_per_rise_pp": max_per_rise * 100,
        "passed": rise <= max_per_rise,
    }
