"""Run the frozen layers of a Whisper encoder once over the train cache, for head training to read.

    python -m iqrah_train.encode --data runs/data --encoder base --layers 4,6 --out runs/enc-base

Why: on 2 CPU cores a frozen encoder costs most of a training step, and it computes the same thing
every epoch. Computed once (about 0.03 x real time for Whisper base), a head trains on it in
minutes (``loop --cached``). ``--augment PRESET`` encodes an augmented copy instead (one draw per
utterance, seeded by ``--seed``), so that the head still meets other channels and voices;
``loop --cached`` takes several such folders and draws one copy per utterance and epoch.

Writes into ``--out``:
  hidden-l{K}.f16  float16 (frames, d): the output of the first K blocks, every utterance's 20 ms
                   frames one after another (a memmap), one file per layer in ``--layers``
  index.json       the encoder's configuration, the layers, the augmentation, and
                   file -> [offset, frames] into every hidden file

Resumable: an interrupted run keeps what its index lists and goes on from there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from iqrah.acoustic import Vocabulary
from iqrah.acoustic.features import WHISPER_FEATURES, log_mel

from .augment import PRESETS, augment_audio
from .data import TrainData
from .whisper_encoder import ENCODERS, WhisperEncoder, default_weights, encoder_frames


def read_index(folder: Path) -> dict:
    return json.loads((Path(folder) / "index.json").read_text(encoding="utf-8"))


def open_hidden(folder: Path, layer: int, d: int) -> np.ndarray:
    """The cached output of the first ``layer`` blocks, (frames, d) float16, read-only."""
    path = Path(folder) / f"hidden-l{layer}.f16"
    return np.memmap(path, dtype=np.float16, mode="r").reshape(-1, d)


def _batches(lengths: np.ndarray, max_seconds: float) -> list[list[int]]:
    """Utterances in order of length, cut into batches of at most ``max_seconds`` padded audio."""
    order = np.argsort(lengths, kind="stable")
    out, cur = [], []
    for i in order:
        if cur and lengths[i] * (len(cur) + 1) > max_seconds * 16000:
            out.append(cur)
            cur = []
        cur.append(int(i))
    return out + ([cur] if cur else [])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/data"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="base")
    ap.add_argument("--layers", default="4,6", help="comma-separated: store the output of the first K blocks for each K")
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--augment", choices=sorted(PRESETS), default=None, help="encode an augmented copy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit-files", type=int, default=0, help="smoke tests: only this many files")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = sorted({int(k) for k in args.layers.split(",")})
    full = ENCODERS[args.encoder]
    if not 1 <= layers[0] <= layers[-1] <= full.layers:
        raise SystemExit(f"--layers must lie in 1..{full.layers} for Whisper {args.encoder}")
    from dataclasses import replace
    cfg = replace(full, layers=layers[-1])
    encoder = WhisperEncoder(cfg).load_ctranslate2(default_weights(args.encoder)).eval()
    data = TrainData(args.data, Vocabulary(), args.max_seconds)
    utts = data.utts[: args.limit_files] if args.limit_files else data.utts
    aug = PRESETS[args.augment] if args.augment else None
    if aug is not None and aug.p_squeeze > 0 and all(u.onsets is None for u in utts):
        raise SystemExit(f"--augment {args.augment} needs phoneme onsets: run iqrah_train.onsets first")

    args.out.mkdir(parents=True, exist_ok=True)
    ipath = args.out / "index.json"
    meta = {"encoder": cfg.to_dict(), "layers": layers, "augment": args.augment, "seed": args.seed,
            "data": str(args.data), "files": {}}
    if ipath.exists():
        old = read_index(args.out)
        if {k: old[k] for k in ("encoder", "layers", "augment", "seed")} != {k: meta[k] for k in ("encoder", "layers", "augment", "seed")}:
            raise SystemExit(f"{args.out} holds a cache made with other settings")
        meta = old
    done = meta["files"]
    total = sum(n for _, n in done.values())
    handles = {}
    for k in layers:  # drop whatever an interrupted run wrote after its last index
        path = args.out / f"hidden-l{k}.f16"
        path.touch()
        with open(path, "r+b") as fh:
            fh.truncate(total * cfg.d * 2)
        handles[k] = open(path, "ab")  # noqa: SIM115 - kept open for the run

    todo = [i for i, u in enumerate(utts) if u.file not in done]
    lengths = np.array([utts[i].length for i in todo])
    batches = [[todo[j] for j in b] for b in _batches(lengths, args.batch_seconds)] if todo else []
    t0, seconds, last_save = time.time(), 0.0, time.time()
    print(f"{len(utts)} utterances, {len(todo)} to encode in {len(batches)} batches; layers {layers} of "
          f"Whisper {args.encoder}" + (f", augmented ({args.augment})" if aug else ""), flush=True)
    for nb, batch in enumerate(batches):
        feats = []
        for i in batch:
            u = utts[i]
            audio = data.audio[u.offset : u.offset + u.length].astype(np.float32) / 32768.0
            if aug is not None:
                audio = _augmented(audio, u.onsets, aug, [args.seed, i, 5], limit=(cfg.max_frames - 1) * 320)
            feats.append(log_mel(audio, WHISPER_FEATURES))
            seconds += audio.size / 16000
        lens = torch.tensor([f.shape[0] for f in feats])
        x = torch.zeros(len(feats), int(lens.max()), WHISPER_FEATURES.n_mels)
        for k, f in enumerate(feats):
            x[k, : f.shape[0]] = torch.from_numpy(f)
        n = encoder_frames(lens)
        with torch.no_grad():
            h = encoder(x, lens, layers=0)
            prev = 0
            outs = {}
            for k in layers:
                h = encoder.run_blocks(h, n, prev, k)
                outs[k] = h.to(torch.float16).numpy()
                prev = k
        for j, i in enumerate(batch):
            for k in layers:
                handles[k].write(np.ascontiguousarray(outs[k][j, : int(n[j])]).tobytes())
            done[utts[i].file] = [total, int(n[j])]
            total += int(n[j])
        if time.time() - last_save > 60 or nb == len(batches) - 1:
            for fh in handles.values():
                fh.flush()
            ipath.write_text(json.dumps(meta), encoding="utf-8")
            last_save = time.time()
            el = time.time() - t0
            print(f"batch {nb + 1}/{len(batches)}: {len(done)} files, {seconds / 3600:.2f} h in {el / 60:.1f} min "
                  f"(RTF {el / max(seconds, 1e-9):.3f})", flush=True)
    for fh in handles.values():
        fh.close()
    ipath.write_text(json.dumps(meta), encoding="utf-8")
    print(f"done: {len(done)} files, {total} frames ({total * 0.02 / 3600:.2f} h) -> {args.out}")


def _augmented(audio: np.ndarray, onsets, aug, seed: list[int], limit: int) -> np.ndarray:
    """An augmented copy no longer than ``limit`` samples (what the encoder's positions cover: a
    file near 30 s slowed down would not fit). Up to four draws, else the audio as it is."""
    for attempt in range(4):
        out = augment_audio(audio, np.random.default_rng(seed + [attempt] if attempt else seed), aug, onsets)
        if out.size <= limit:
            return out
    return audio


if __name__ == "__main__":
    main()
