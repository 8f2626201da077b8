"""Average the weights of checkpoints of one lineage (a 'model soup').

    PYTHONPATH=train python -m iqrah_train.average --ckpt runs/recovered/last.pt --ckpt runs/speech1/last.pt \\
        --out runs/soup-s1/last.pt

Checkpoints fine-tuned from the same weights stay in one basin, so the mean of their weights is
a working model between them, at no cost at run time: 0.3.0 is the mean of 0.2.1 and the speech
stage trained from it (docs/model.md). The output lists the last checkpoint as its latest stage
(naming the others) and has no training of its own (step 0), so the card and a later ``--init``
count every step once.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch


def average(paths: list[Path]) -> dict:
    cks = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    if any(ck["config"] != cks[0]["config"] for ck in cks):
        raise SystemExit("checkpoints of different model configurations cannot be averaged")
    last = cks[-1]
    out = copy.deepcopy(last)
    for name, value in last["model"].items():
        if value.is_floating_point():
            out["model"][name] = sum(ck["model"][name] for ck in cks) / len(cks)
    out["stages"] = last.get("stages", []) + [{
        "ckpt": str(paths[-1]), "steps": last["state"]["step"], "minutes": round(last["state"]["elapsed"] / 60, 1),
        "audio_hours_seen": round(last["state"]["audio_seconds"] / 3600, 2), "data": last["data"], "args": last["args"],
        "note": "weights averaged with " + ", ".join(str(p) for p in paths[:-1])}]
    out["state"] = {**last["state"], "step": 0, "elapsed": 0.0, "audio_seconds": 0.0}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, action="append", required=True, help="a checkpoint (give two or more)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if len(args.ckpt) < 2:
        raise SystemExit("give at least two --ckpt")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(average(args.ckpt), args.out)
    print(f"mean of {len(args.ckpt)} checkpoints -> {args.out}")


if __name__ == "__main__":
    main()
