"""Precompute what training needs once: phoneme targets and decoded audio.

    python -m iqrah_train.prep --manifest ../shared/recitations/manifest.csv --out runs/data

Writes into ``--out``:
  targets.json   file -> {"phonemes": str, "basmala": bool, ...} for every usable row
  audio.int16    all decoded audio, int16 16 kHz mono, concatenated (a memmap)
  index.json     file -> [offset, length] in samples into audio.int16, plus row metadata

Rows with ayah 0 (basmala/isti'adha only) are skipped. A first ayah of a surah with a basmala
gets the basmala prepended when the file's duration is closer to the prediction with it, from
the reciter's own phonemes-per-second rate measured on that reciter's other files. A reciter
with no other files (the crowd speakers of 83:1-3) has no rate: there the bundled acoustic model
listens, and the reference its greedy output is closer to wins.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np


def _phonemes(row: dict) -> dict:
    from iqrah.config import RecitationSettings
    from iqrah.quran import build_reference
    surah, ayah, ayah_end = int(row["surah"]), int(row["ayah"]), int(row["ayah_end"])
    try:
        if row["text"].strip():
            import quran_transcript
            ph = quran_transcript.quran_phonetizer(row["text"].strip(),
                                                   RecitationSettings().to_moshaf(),
                                                   remove_spaces=True, sura_idx=surah).phonemes
            return {"file": row["file"], "plain": ph, "with_basmala": None}
        spec = f"{surah}:{ayah}" if ayah == ayah_end else f"{surah}:{ayah}-{ayah_end}"
        plain = build_reference(spec).phonemes
        withb = build_reference(spec, include_basmala=True).phonemes
        return {"file": row["file"], "plain": plain, "with_basmala": withb if withb != plain else None}
    except Exception as exc:  # noqa: BLE001 - report and skip the row
        return {"file": row["file"], "error": repr(exc)}


_EAR = None


def _hear_basmala(path: Path, plain: str, with_basmala: str) -> bool:
    """Whether the bundled model's greedy output is closer to the reference with the basmala."""
    global _EAR
    import Levenshtein

    from iqrah.acoustic.onnx_model import OnnxAcousticModel
    from iqrah.audio import decode_audio

    from .data import collapse
    if _EAR is None:
        _EAR = OnnxAcousticModel(threads=1)
    heard = collapse(_EAR.vocab.greedy(_EAR.log_probs(decode_audio(path))))
    return Levenshtein.distance(heard, collapse(with_basmala)) < Levenshtein.distance(heard, collapse(plain))


def _decode(path: str) -> np.ndarray:
    from iqrah.audio import decode_audio
    audio = decode_audio(path)
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def load_rows(manifest: Path, split: str, max_seconds: float) -> list[dict]:
    with open(manifest, encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    return [r for r in rows if int(r["ayah"]) > 0 and float(r["duration_s"]) <= max_seconds]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=Path("../shared/recitations/manifest.csv"))
    ap.add_argument("--out", type=Path, default=Path("runs/data"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.manifest.resolve().parent
    rows = load_rows(args.manifest, args.split, args.max_seconds)
    print(f"{len(rows)} rows of split {args.split} up to {args.max_seconds} s")

    tpath = args.out / "targets.json"
    t0 = time.time()
    if tpath.exists():
        targets = json.loads(tpath.read_text(encoding="utf-8"))
    else:
        with Pool(args.jobs) as pool:
            res = pool.map(_phonemes, rows, chunksize=8)
        by_file = {r["file"]: r for r in res}
        # basmala decision per file from the reciter's own speaking rate
        rates = defaultdict(list)
        for row in rows:
            r = by_file[row["file"]]
            if "error" not in r and r["with_basmala"] is None:
                rates[row["reciter"]].append(len(r["plain"]) / float(row["duration_s"]))
        rate = {k: statistics.median(v) for k, v in rates.items()}
        targets = {}
        n_err = n_b = n_heard = 0
        for row in rows:
            r = by_file[row["file"]]
            if "error" in r:
                n_err += 1
                print("skip", row["file"], r["error"])
                continue
            ph, basm = r["plain"], False
            if r["with_basmala"] is not None and row["reciter"] not in rate:
                basm = _hear_basmala(root / row["file"], r["plain"], r["with_basmala"])
                n_heard += 1
            elif r["with_basmala"] is not None:
                rt = rate[row["reciter"]]
                d = float(row["duration_s"])
                basm = abs(len(r["with_basmala"]) / rt - d) < abs(len(r["plain"]) / rt - d)
            if basm:
                ph = r["with_basmala"]
                n_b += 1
            targets[row["file"]] = {"phonemes": ph, "basmala": basm, "reciter": row["reciter"],
                                    "duration_s": float(row["duration_s"])}
        tpath.write_text(json.dumps(targets, ensure_ascii=False), encoding="utf-8")
        print(f"targets: {len(targets)} ({n_err} errors, basmala prepended to {n_b}, {n_heard} decided by ear) "
              f"in {time.time() - t0:.0f} s; rates {json.dumps(rate)}")

    ipath = args.out / "index.json"
    if ipath.exists():
        print("audio cache exists:", ipath)
        return
    files = [r["file"] for r in rows if r["file"] in targets]
    t0 = time.time()
    index = {}
    offset = 0
    with open(args.out / "audio.int16", "wb") as fh, Pool(args.jobs) as pool:
        for f, pcm in zip(files, pool.imap(_decode, [str(root / f) for f in files], chunksize=4)):
            fh.write(pcm.tobytes())
            index[f] = [offset, int(pcm.size)]
            offset += int(pcm.size)
    ipath.write_text(json.dumps(index), encoding="utf-8")
    print(f"audio: {len(index)} files, {offset / 16000 / 3600:.2f} h in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
