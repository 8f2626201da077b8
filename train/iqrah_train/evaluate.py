"""Greedy phoneme error rate of an exported ONNX model on the dev split, per reciter group.

    PYTHONPATH=train python -m iqrah_train.evaluate --model src/iqrah/acoustic/assets/iqrah-small.onnx

PER = Levenshtein distance between the greedy output and the reference phonemes, both with runs
of the same symbol collapsed, over the reference length (pooled over the files of a group; the
median per file is given too). The reference is the phonetizer's output for the labelled ayahs;
for a first ayah of a surah (where a basmala may or may not be recited) the file is scored
against both the reference with and without the basmala and the better one counts.
Groups: Alafasy (unseen professional), RetaSy (non-native crowd), TLOG (crowd, phones).

``--ckpt`` scores a whisper-ctc training checkpoint in torch, with the runtime's windows, before
any export: the frozen encoder layers' output of each window is kept in
``runs/dev-cache/<encoder>-l<K>.npz``, so that comparing heads on the same encoder costs seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import Levenshtein

from .data import collapse

GROUPS = {"Mishary Alafasy": "Alafasy", "RetaSy": "RetaSy", "TLOG": "TLOG"}


def group_of(reciter: str) -> str:
    for key, name in GROUPS.items():
        if reciter.startswith(key):
            return name
    return reciter


def dev_references(manifest: Path, cache: Path | None = None) -> list[dict]:
    if cache is not None and cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    from iqrah.quran import build_reference
    root = manifest.resolve().parent
    refs = []
    with open(manifest, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["split"] != "dev" or int(r["ayah"]) == 0:
            continue
        a, b = int(r["ayah"]), int(r["ayah_end"])
        spec = f"{r['surah']}:{a}" if a == b else f"{r['surah']}:{a}-{b}"
        plain = build_reference(spec).phonemes
        withb = build_reference(spec, include_basmala=True).phonemes
        refs.append({"file": str(root / r["file"]), "group": group_of(r["reciter"]),
                     "duration_s": float(r["duration_s"]),
                     "refs": [collapse(plain)] + ([collapse(withb)] if withb != plain else [])})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(refs, ensure_ascii=False), encoding="utf-8")
    return refs


def evaluate(model, refs: list[dict], audio_cache: dict | None = None) -> dict:
    from iqrah.audio import decode_audio
    per_group: dict[str, dict] = {}
    t0 = time.time()
    seconds = 0.0
    for item in refs:
        if audio_cache is not None and item["file"] in audio_cache:
            audio = audio_cache[item["file"]]
        else:
            audio = decode_audio(item["file"])
            if audio_cache is not None:
                audio_cache[item["file"]] = audio
        seconds += audio.size / 16000
        hyp = collapse(model.vocab.greedy(model.log_probs(audio)))
        dist, ref = min((Levenshtein.distance(hyp, r), r) for r in item["refs"])
        g = per_group.setdefault(item["group"], {"edits": 0, "ref": 0, "files": []})
        g["edits"] += dist
        g["ref"] += len(ref)
        g["files"].append(dist / max(1, len(ref)))
    out = {}
    for name, g in sorted(per_group.items()):
        out[name] = {"per": round(100 * g["edits"] / g["ref"], 2),
                     "median_file_per": round(100 * statistics.median(g["files"]), 2),
                     "files": len(g["files"])}
    out["_speed"] = {"audio_seconds": round(seconds, 1), "wall_seconds": round(time.time() - t0, 1)}
    return out


def checkpoint_model(ckpt_path: Path, cache_dir: Path = Path("runs/dev-cache"), window_seconds: float = 10.0):
    """A whisper-ctc checkpoint heard as ``OnnxAcousticModel`` hears its export (same windows and
    features, no delay cut), with the frozen layers' output of every window cached on disk."""
    import hashlib

    import numpy as np
    import torch

    from iqrah.acoustic import Vocabulary
    from iqrah.acoustic.onnx_model import OnnxAcousticModel

    from .export import build

    class CheckpointModel(OnnxAcousticModel):
        def __init__(self):  # no ONNX session: the network is the checkpoint's
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            self.net = build(ck)
            card = {"vocabulary": list(Vocabulary().tokens), "features": ck["features"],
                    "architecture": {"type": "whisper-ctc"}, "window_seconds": window_seconds}
            self._configure(card, str(ckpt_path))
            enc = self.net.cfg.encoder
            self.cache_path = cache_dir / f"{enc.name}-l{self.net.frozen_layers}.npz"
            self.cache = dict(np.load(self.cache_path)) if self.cache_path.exists() else {}
            self.fresh = 0

        def _infer(self, features):
            key = hashlib.sha1(features.tobytes()).hexdigest()
            with torch.no_grad():
                if key not in self.cache:
                    frozen = self.net.encoder(torch.from_numpy(features), layers=self.net.frozen_layers)
                    self.cache[key] = frozen.numpy().astype(np.float16)
                    self.fresh += 1
                return self.net.from_frozen(torch.from_numpy(self.cache[key].astype(np.float32))).numpy()

        def save(self):
            if self.fresh:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(self.cache_path, **self.cache)

    return CheckpointModel()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="ONNX file (default: the bundled model)")
    ap.add_argument("--ckpt", type=Path, default=None, help="a whisper-ctc training checkpoint instead of an ONNX file")
    ap.add_argument("--manifest", type=Path, default=Path("../shared/recitations/manifest.csv"))
    ap.add_argument("--cache", type=Path, default=Path("runs/data/dev_refs.json"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    refs = dev_references(args.manifest, args.cache)
    if args.ckpt is not None:
        import torch
        torch.set_num_threads(args.threads)
        model = checkpoint_model(args.ckpt)
        res = evaluate(model, refs)
        model.save()
    else:
        from iqrah.acoustic.onnx_model import OnnxAcousticModel
        res = evaluate(OnnxAcousticModel(args.model, threads=args.threads), refs)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
