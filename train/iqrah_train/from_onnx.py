"""Recover a training checkpoint from the shipped (INT8) ONNX model.

The stage-3 (``voices``) training checkpoint was lost; only the shipped
``src/iqrah/acoustic/assets/iqrah-small.onnx`` (dynamic INT8) and its card remain. To continue
fine-tuning, this recovers the weights of that model into a checkpoint that ``loop.py --init``
reads:

    PYTHONPATH=train python -m iqrah_train.from_onnx --out runs/recovered [--check 8] [--eval]

* INT8 weights (``<w>_quantized``, ``<w>_scale``, ``<w>_zero_point`` feeding a ``MatMulInteger`` or
  ``ConvInteger``) are dequantized, ``(q - zero_point) * scale``; the module is found from the
  node's name (``/blocks.0/ff1/l1/MatMul...`` -> ``blocks.0.ff1.l1``), its bias from the ``Add``
  that follows. MatMul weights are ``(in, out)``: transposed for ``nn.Linear.weight``.
* The exporter folded each ConvModule's BatchNorm1d into the depthwise convolution (the
  ``onnx::Conv_9xx`` weights and biases), so ``conv.dw`` gets the folded weight and bias and
  ``norm2`` is calibrated to be (nearly) the identity in both modes: with the per-channel mean
  ``m`` and std ``s`` of the depthwise output over ``--batches`` augmented train batches,
  ``norm2.weight = s``, ``norm2.bias = m``, ``running_mean = m``, ``running_var = s**2``, so a
  train-mode BatchNorm (batch statistics ~ m, s) and the eval-mode one both give ~ z.
* The quantization error stays in the weights (they are the INT8 values, dequantized).

``--check N`` compares the recovered model (eval mode, torch) with onnxruntime on the shipped ONNX
on N dev files (argmax agreement, max log-prob difference); ``--eval`` exports the recovered model
to FP32 ONNX (``<out>/export/fp32.onnx``) and prints the dev PER per group (``iqrah_train.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from iqrah.acoustic import Vocabulary

from .augment import PRESETS
from .data import BatchStream, TrainData
from .model import Conformer, ModelConfig

ASSETS = Path(__file__).resolve().parents[2] / "src" / "iqrah" / "acoustic" / "assets"


def _module_of(node_output: str) -> str:
    """'/blocks.0/conv/dw/Conv_output_0_output_quantized' -> 'blocks.0.conv.dw'."""
    parts = node_output.strip("/").split("/")
    return ".".join(parts[:-1])


def recover_state(onnx_path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Dequantized weights of the ONNX graph under the Conformer's state-dict names (BatchNorm
    folded into ``conv.dw``; ``norm2`` left out). Returns (state, notes)."""
    m = onnx.load(str(onnx_path))
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list] = {}
    producer: dict[str, object] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n

    def const(name: str) -> np.ndarray | None:
        """An initializer, possibly behind Reshape/Identity nodes of initializers."""
        if name in inits:
            return inits[name]
        n = producer.get(name)
        if n is not None and n.op_type in ("Reshape", "Identity", "Squeeze", "Unsqueeze") and n.input[0] in inits:
            return inits[n.input[0]]
        return None

    state: dict[str, np.ndarray] = {}
    notes = []
    for n in g.node:
        if n.op_type not in ("MatMulInteger", "ConvInteger", "MatMul", "Conv", "Gemm"):
            continue
        wname = n.input[1]
        if n.op_type in ("MatMulInteger", "ConvInteger"):
            base = wname.removesuffix("_quantized")
            q = inits[wname].astype(np.float32)
            scale = inits[base + "_scale"].astype(np.float32)
            zp = inits[base + "_zero_point"].astype(np.float32) if base + "_zero_point" in inits else 0.0
            w = (q - zp) * scale
            # integer output -> Cast -> Mul (scales) -> Add (bias)
            out = n.output[0]
            for _ in range(2):
                (nxt,) = consumers[out]
                assert nxt.op_type in ("Cast", "Mul"), nxt.op_type
                out = nxt.output[0]
        else:
            if wname not in inits:  # activation x activation (attention): not a weight
                continue
            w = inits[wname].astype(np.float32)
            out = n.output[0]
        mod = _module_of(n.output[0])
        bias = None
        if n.op_type == "Conv" and len(n.input) > 2:
            bias = inits[n.input[2]]
        else:
            for nxt in consumers.get(out, []):
                if nxt.op_type == "Add":
                    other = [i for i in nxt.input if i != out]
                    b = const(other[0]) if other else None
                    if b is not None:
                        bias = b.reshape(-1)
                        break
        if "MatMul" in n.op_type:
            w = w.T  # ONNX MatMul(x, W): W is (in, out); nn.Linear.weight is (out, in)
        state[mod + ".weight"] = w
        if bias is not None:
            state[mod + ".bias"] = bias.astype(np.float32)
        else:
            notes.append(f"{mod}: no bias found")
    # the rest (LayerNorm weights and biases) keep their names
    for k, v in inits.items():
        if k not in state and re.match(r"^(sub|blocks|head)\.", k) and k.endswith((".weight", ".bias")) \
                and v.dtype == np.float32:
            state[k] = v
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in state.items()}, notes


def build_model(onnx_path: Path, cfg: ModelConfig) -> Conformer:
    model = Conformer(cfg)
    rec, notes = recover_state(onnx_path)
    want = model.state_dict()
    missing = [k for k in want if k not in rec and ".norm2." not in k]
    extra = [k for k in rec if k not in want]
    if missing or extra:
        raise SystemExit(f"mapping failed: missing {missing}, unexpected {extra}; notes {notes}")
    for k, v in rec.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise SystemExit(f"{k}: shape {tuple(v.shape)} in the ONNX graph, {tuple(want[k].shape)} in the model")
    # BatchNorm folded into dw: start norm2 as an exact eval-mode identity for the calibration pass
    for blk in model.blocks:
        bn = blk.conv.norm2
        with torch.no_grad():
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
    sd = model.state_dict()
    sd.update(rec)
    model.load_state_dict(sd)
    print(f"recovered {len(rec)} tensors from {onnx_path.name}" + (f"; notes: {notes}" if notes else ""))
    return model


def calibrate_norm2(model: Conformer, data: TrainData, batches: int, seed: int, aug_name: str,
                    epoch: int = 1) -> list[dict]:
    """Set each norm2 so that BN(z) ~= z in train mode (batch stats) and eval mode (running stats)."""
    model.eval()
    sums = [torch.zeros(model.cfg.d, dtype=torch.float64) for _ in model.blocks]
    sqs = [torch.zeros(model.cfg.d, dtype=torch.float64) for _ in model.blocks]
    counts = [0 for _ in model.blocks]

    def hook(i):
        def f(_mod, _inp, out):  # (B, C, T): train-mode BN pools over B and T, padding included
            z = out.detach().double()
            sums[i] += z.sum(dim=(0, 2))
            sqs[i] += (z * z).sum(dim=(0, 2))
            counts[i] += z.shape[0] * z.shape[2]
        return f

    handles = [blk.conv.dw.register_forward_hook(hook(i)) for i, blk in enumerate(model.blocks)]
    plan = data.batches(epoch, seed, 35.0)
    rng = np.random.default_rng([seed, 99])
    pick = sorted(rng.choice(len(plan), size=min(batches, len(plan)), replace=False))
    stream = BatchStream(data, [plan[j] for j in pick], epoch, 0, seed, PRESETS[aug_name], wave=True)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, shuffle=False, num_workers=1, prefetch_factor=4)
    t0 = time.time()
    with torch.no_grad():
        for _b, x, xlens, _y, _yl in loader:
            model(x, xlens)
    for h in handles:
        h.remove()
    stats = []
    for i, blk in enumerate(model.blocks):
        mean = sums[i] / counts[i]
        var = (sqs[i] / counts[i] - mean * mean).clamp_min(1e-8)
        s = var.sqrt()
        bn = blk.conv.norm2
        with torch.no_grad():
            bn.weight.copy_(s.float())
            bn.bias.copy_(mean.float())
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.num_batches_tracked.zero_()
        stats.append({"block": i, "std_min": round(float(s.min()), 4), "std_median": round(float(s.median()), 4),
                      "mean_abs_median": round(float(mean.abs().median()), 4)})
    print(f"calibrated norm2 on {len(pick)} batches ({time.time() - t0:.0f} s): "
          + "; ".join(f"b{st['block']} std min {st['std_min']} median {st['std_median']}" for st in stats))
    return stats


def check_against_onnx(model: Conformer, onnx_path: Path, manifest: Path, n_files: int) -> dict:
    """Argmax agreement and max |log-prob| difference, torch (eval) vs onnxruntime, on dev files."""
    import onnxruntime as ort

    from iqrah.acoustic.features import log_mel
    from iqrah.audio import decode_audio

    from .evaluate import dev_references
    refs = dev_references(manifest, Path("runs/data/dev_refs.json"))
    by_group: dict[str, list] = {}
    for r in refs:
        by_group.setdefault(r["group"], []).append(r)
    files = []
    k = 0
    while len(files) < n_files and any(by_group.values()):
        for grp in sorted(by_group):
            if by_group[grp] and len(files) < n_files:
                files.append(by_group[grp].pop(k % 3 if len(by_group[grp]) > 3 else 0))
        k += 1
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model.eval()
    agree = total = 0
    maxdiff = 0.0
    per_file = []
    for item in files:
        audio = decode_audio(item["file"])[: 20 * 16000]
        feats = log_mel(audio)[None].astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(feats)).numpy()[0]
        got = sess.run(None, {"features": feats})[0][0]
        a = float((ref.argmax(-1) == got.argmax(-1)).mean())
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        total += ref.shape[0]
        maxdiff = max(maxdiff, float(np.abs(ref - got).max()))
        per_file.append({"file": Path(item["file"]).name, "group": item["group"], "frames": ref.shape[0],
                         "argmax_agreement": round(a, 4), "mean_abs_diff": round(float(np.abs(ref - got).mean()), 4)})
    res = {"files": len(files), "frames": total, "argmax_agreement": round(agree / max(1, total), 4),
           "max_abs_logprob_diff": round(maxdiff, 3), "per_file": per_file}
    print(f"torch (recovered) vs onnxruntime (shipped): argmax agreement {res['argmax_agreement']:.4f} over "
          f"{total} frames of {len(files)} dev files, max |diff| {maxdiff:.3f}")
    for pf in per_file:
        print(f"  {pf['group']:8s} {pf['file']}: {pf['argmax_agreement']:.4f} ({pf['frames']} frames, "
              f"mean |diff| {pf['mean_abs_diff']})")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, default=ASSETS / "iqrah-small.onnx")
    ap.add_argument("--card", type=Path, default=None, help="default: the .json beside --onnx")
    ap.add_argument("--data", type=Path, default=Path("runs/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/recovered"))
    ap.add_argument("--manifest", type=Path, default=Path("../shared/recitations/manifest.csv"))
    ap.add_argument("--batches", type=int, default=30, help="train batches for the norm2 calibration")
    ap.add_argument("--augment", choices=sorted(PRESETS), default="voices",
                    help="augmentation of the calibration batches (that of the fine-tuning to follow)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--check", type=int, default=0, help="compare with onnxruntime on this many dev files")
    ap.add_argument("--eval", action="store_true", help="export FP32 ONNX and print dev PER per group")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    card_path = args.card or args.onnx.with_suffix(".json")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    vocab = Vocabulary()
    if list(vocab.tokens) != card["vocabulary"]:
        raise SystemExit("card vocabulary differs from iqrah's")
    arch = {k: v for k, v in card["architecture"].items() if k in ModelConfig.__dataclass_fields__}
    cfg = ModelConfig(**arch)
    if cfg != ModelConfig(vocab=len(vocab)):
        print(f"note: card architecture {cfg} differs from the default config")
    model = build_model(args.onnx, cfg)
    data = TrainData(args.data, vocab, args.max_seconds)
    stats = calibrate_norm2(model, data, args.batches, args.seed, args.augment)

    tr = card.get("training", {})
    state = {"step": int(tr.get("steps", 0)), "epoch": int(tr.get("epochs_started", 1)) - 1, "batch": 0,
             "elapsed": float(tr.get("minutes", 0.0)) * 60, "total_steps": int(tr.get("steps", 0)),
             "audio_seconds": float(tr.get("audio_hours_seen", 0.0)) * 3600}
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = {"model": model.state_dict(), "state": state, "config": cfg.to_dict(), "vocab": list(vocab.tokens),
            "seed": int(tr.get("seed", 0)), "data": tr.get("data", data.summary()), "args": tr.get("args", {}),
            "stages": tr.get("earlier_stages", []),
            "recovered_from": {"onnx": str(args.onnx), "card_version": card.get("version"),
                               "precision": card.get("precision"), "norm2_calibration": {
                                   "batches": args.batches, "augment": args.augment, "seed": args.seed,
                                   "stats": stats},
                               "note": "weights dequantized from the shipped INT8 ONNX; BatchNorm folded into "
                                       "conv.dw, norm2 calibrated to ~identity"}}
    path = args.out / "last.pt"
    torch.save(ckpt, path)
    print(f"wrote {path} (state step {state['step']}, {len(ckpt['stages'])} earlier stages)")
    report = {"calibration": stats}
    if args.check:
        report["check"] = check_against_onnx(model, args.onnx, args.manifest, args.check)
    if args.eval:
        from iqrah.acoustic.onnx_model import OnnxAcousticModel

        from .evaluate import dev_references, evaluate
        from .export import check_export, export_onnx
        fp32 = args.out / "export" / "fp32.onnx"
        m2 = export_onnx(ckpt, fp32)
        check_export(m2, fp32)
        res = evaluate(OnnxAcousticModel(fp32, card_path, threads=args.threads),
                       dev_references(args.manifest, Path("runs/data/dev_refs.json")))
        print("recovered fp32 dev PER:", json.dumps(res))
        report["dev_fp32"] = res
    (args.out / "recover.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
