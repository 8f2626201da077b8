"""Where a model hears each new phoneme begin, for every cached train recording.

    PYTHONPATH=train python -m iqrah_train.onsets --data runs/data [--model M.onnx]

Writes ``<data>/onsets.json``: for each file, the start times (s, 40 ms frames) of the greedy
CTC output's non-blank runs, the points between which ``augment.squeeze_held`` shortens held
sounds. A rough map is enough there, so the model is the bundled one unless told otherwise
(about 3 minutes on 2 cores for the 11.7 h train cache).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def onset_times(log_probs: np.ndarray, frame_s: float = 0.04) -> list[float]:
    """Start time of every run of one non-blank token in the frame-wise argmax (blank is 0)."""
    best = np.asarray(log_probs).argmax(axis=1)
    starts = [j for j in range(best.size) if best[j] != 0 and (j == 0 or best[j] != best[j - 1])]
    return [round(j * frame_s, 2) for j in starts]


def main(argv: list[str] | None = None) -> None:
    from iqrah.acoustic.onnx_model import OnnxAcousticModel
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("runs/data"))
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    args = ap.parse_args(argv)
    index = json.loads((args.data / "index.json").read_text(encoding="utf-8"))
    audio = np.memmap(args.data / "audio.int16", dtype=np.int16, mode="r")
    model = OnnxAcousticModel(args.model)
    out, t0 = {}, time.time()
    for k, (name, (offset, n)) in enumerate(sorted(index.items())):
        wave = audio[offset : offset + n].astype(np.float32) / 32768.0
        out[name] = onset_times(model.log_probs(wave))
        if k % 500 == 0:
            print(f"{k}/{len(index)} files, {time.time() - t0:.0f} s", flush=True)
    (args.data / "onsets.json").write_text(json.dumps(out), encoding="utf-8")
    print(f"onsets of {len(out)} files in {time.time() - t0:.0f} s -> {args.data / 'onsets.json'}")


if __name__ == "__main__":
    main()
