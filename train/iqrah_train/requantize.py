"""The INT8 precision of a whisper-ctc export: the encoder's weights per output channel, its
attention MatMuls in float, and a way to give an already shipped model that precision.

Why: dynamic quantization rounds each MatMul's input to 256 levels of one scale per tensor, and
its weights to one scale per matrix. Whisper's activations have a few large channels; in
iqrah-small 0.5.0 this cost learners 1.4 points of dev PER (RetaSy 27.8 % in FP32, 29.2 % INT8).
Computing the encoder's 8 attention MatMuls in float (over INT8 weights dequantized when the
session loads: the file does not grow) and scaling every encoder weight per output channel took
back nearly all of it for 10-20 % more model time on a window (CHANGELOG, 0.5.1).

``export.py`` applies ``mixed_precision`` to a per-channel quantized export. 0.5.0's float
checkpoint was lost; its encoder is Whisper base's first 4 layers, frozen, so ``restore_encoder``
takes their weights again from the Whisper package and quantizes them per channel:

    PYTHONPATH=train .venv/bin/python -m iqrah_train.requantize --model IN.onnx --out DIR --version V [--dev-eval]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from .float_convs import float_convs

#: the encoder's attention projections (qkv and out of every block), computed in float
ATTENTION = r"^/encoder/blocks\.\d+/(qkv|out)/"
#: an encoder MatMul of the whisper-ctc export: block, projection
_ENCODER_MATMUL = re.compile(r"^/encoder/blocks\.(\d+)/(qkv|out|fc1|fc2)/MatMul_quant$")
PRECISION = ("int8 MatMuls (dynamic quantization, onnxruntime; encoder weights per output channel), "
             "float convolutions, the encoder's attention MatMuls in float over INT8 weights dequantized at load")


def mixed_precision(model) -> list[str]:
    """The encoder's attention MatMuls of a dynamically quantized whisper-ctc ``model`` (ModelProto,
    rewritten in place) in float over their INT8 weights; returns their names. The card must say
    ``"fold_dequantize": true`` (the loader then folds the weights once, at load)."""
    names = [n.name.replace("_quant", "") for n in model.graph.node
             if n.op_type == "MatMulInteger" and re.search(ATTENTION, n.name)]
    float_convs(model, matmuls=ATTENTION, int8_weights=True)
    return names


def per_channel(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric INT8 of a MatMul weight (in, out), one scale per output column: (int8, scales)."""
    scale = np.maximum(np.abs(weight).max(axis=0), 1e-12).astype(np.float32) / 127
    return np.clip(np.round(weight / scale), -127, 127).astype(np.int8), scale


def restore_encoder(model, linear_weights: dict[str, np.ndarray]) -> int:
    """Replace the INT8 weights of the encoder's MatMuls by ``linear_weights`` (the float ones,
    ``blocks.{i}.{qkv,out,fc1,fc2}.weight`` as torch's Linear stores them: (out, in)) quantized per
    output channel; checked to be the weights the model was quantized from. Returns how many."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    done = 0
    for node in model.graph.node:
        match = _ENCODER_MATMUL.match(node.name) if node.op_type == "MatMulInteger" else None
        if not match:
            continue
        w_q, w_zp = node.input[1], node.input[3]
        w_scale = w_q.replace("_quantized", "_scale")
        weight = linear_weights[f"blocks.{match[1]}.{match[2]}.weight"].T.astype(np.float32)
        old_scale = numpy_helper.to_array(inits[w_scale])
        old = numpy_helper.to_array(inits[w_q]).astype(np.float32) * old_scale
        if old.shape != weight.shape or np.abs(old - weight).max() > 0.51 * float(np.max(old_scale)):
            raise ValueError(f"{node.name}: these are not the weights the model was quantized from")
        q, scale = per_channel(weight)
        inits[w_q].CopyFrom(numpy_helper.from_array(q, w_q))
        inits[w_zp].CopyFrom(numpy_helper.from_array(np.zeros(q.shape[1], np.int8), w_zp))
        inits[w_scale].CopyFrom(numpy_helper.from_array(scale, w_scale))
        done += 1
    return done


def whisper_linear_weights(card: dict) -> dict[str, np.ndarray]:
    """The pretrained Linear weights of the encoder a whisper-ctc card names (the [train] extra's
    Whisper packages)."""
    from .whisper_encoder import ENCODERS, EncoderConfig, WhisperEncoder, default_weights

    enc = card["architecture"]["encoder"]
    cfg = EncoderConfig(**{**ENCODERS[enc["name"]].to_dict(), **enc})
    encoder = WhisperEncoder(cfg).load_ctranslate2(default_weights(cfg.name))
    return {k: v.numpy() for k, v in encoder.state_dict().items() if k.endswith(".weight") and "blocks." in k}


def main(argv=None) -> None:
    import onnx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="a shipped whisper-ctc model (its card beside it)")
    ap.add_argument("--out", required=True, type=Path, help="folder for iqrah-small.onnx and its card")
    ap.add_argument("--version", required=True)
    ap.add_argument("--dev-eval", action="store_true", help="the dev PER of the result in its card")
    args = ap.parse_args(argv)
    card = json.loads(args.model.with_suffix(".json").read_text(encoding="utf-8"))
    model = onnx.load(str(args.model))
    restored = restore_encoder(model, whisper_linear_weights(card))
    floats = mixed_precision(model)
    onnx.checker.check_model(model)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "iqrah-small.onnx"
    onnx.save(model, str(path))
    card.update(version=args.version, precision=PRECISION, float_matmuls=floats, fold_dequantize=True,
                derived=f"{card.get('name')} {card.get('version')}'s network; the encoder's weights quantized again from "
                        "Whisper's own by iqrah_train.requantize", bytes=path.stat().st_size)
    card_path = path.with_suffix(".json")
    card_path.write_text(json.dumps(card, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{restored} encoder weights per channel, {len(floats)} MatMuls in float: {path}")
    if args.dev_eval:
        from iqrah.acoustic.onnx_model import OnnxAcousticModel

        from .evaluate import dev_references, evaluate

        refs = dev_references(Path("../shared/recitations/manifest.csv"), Path("runs/data/dev_refs.json"))
        card.setdefault("dev", {})["shipped"] = evaluate(OnnxAcousticModel(path, threads=2), refs)
        card_path.write_text(json.dumps(card, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(card["dev"]["shipped"]))


if __name__ == "__main__":
    main()
