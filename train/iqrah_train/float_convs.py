"""Turn INT8 convolutions (and chosen MatMuls) of a dynamically quantized model back into float ones.

onnxruntime has no fast kernel for ``ConvInteger``: in the shipped model its 20 convolutions
took 8 of the 15 ms that a 2 s window costs on one thread, while the 38 quantized MatMuls took
1.2 ms. ``export.py`` now quantizes MatMuls only; this rewrites an already shipped model the same
way without its float checkpoint: each ``DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul``
becomes one ``Conv`` whose weights are the INT8 weights dequantized (the weights the INT8 model
computes with, so only the rounding of the activations goes away).

MatMuls too (``--matmuls REGEX``, those whose node name matches): dynamic quantization rounds each
MatMul's input to 256 levels of one scale for the whole tensor, and Whisper's activations have a
few large channels; in iqrah-small 0.5.0 that cost learners 1.4 points of PER. ``--int8-weights``
keeps such weights INT8 in the file (the file does not grow) behind a ``DequantizeLinear`` that
onnxruntime folds into float weights when the session loads, which the loader asks for when the
card says ``"fold_dequantize": true`` (``requantize.py`` uses it for the shipped precision).

    PYTHONPATH=train .venv/bin/python -m iqrah_train.float_convs --model IN.onnx --out OUT.onnx \
        [--matmuls [REGEX]] [--int8-weights]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np


def float_convs(model, matmuls: str | None = None, int8_weights: bool = False):
    """Rewrite ``model`` (an onnx ModelProto) in place; returns how many nodes changed. MatMuls
    whose name matches the regex ``matmuls`` become float too (``"."``: all of them, a float model,
    whose batches are computed exactly as their items one by one). ``int8_weights``: the float
    weights are the INT8 ones behind a ``DequantizeLinear`` (see the module's docstring)."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}

    def consumers(name):
        return [n for n in graph.node if name in n.input]

    def constant(name):
        return numpy_helper.to_array(inits[name])

    changed, drop, new_inits = 0, [], []
    integer_ops = {"ConvInteger": "Conv", "MatMulInteger": "MatMul"}
    chosen = [n for n in graph.node if n.op_type == "ConvInteger"
              or (n.op_type == "MatMulInteger" and matmuls is not None and re.search(matmuls, n.name))]
    for conv in chosen:
        x_q, w_q, _, w_zp = conv.input
        quantize = producer[x_q]
        assert quantize.op_type == "DynamicQuantizeLinear", quantize.op_type
        (cast,) = consumers(conv.output[0])
        (mul,) = consumers(cast.output[0])
        assert cast.op_type == "Cast" and mul.op_type == "Mul", (cast.op_type, mul.op_type)
        scales = producer[next(i for i in mul.input if i != cast.output[0])]
        assert scales.op_type == "Mul", scales.op_type
        w_scale = next(i for i in scales.input if i in inits)
        q = constant(w_q).astype(np.float32)
        # per output channel (a Conv's first axis, a MatMul's last), or one for all
        shape = (-1,) + (1,) * (q.ndim - 1) if conv.op_type == "ConvInteger" else (-1,)
        zero = constant(w_zp).astype(np.float32).reshape(shape if constant(w_zp).size > 1 else ())
        scale = constant(w_scale).astype(np.float32).reshape(shape if constant(w_scale).size > 1 else ())
        weight_name = w_q.replace("_quantized", "") + "_float"
        if int8_weights:
            axis = 0 if conv.op_type == "ConvInteger" else q.ndim - 1
            graph.node.insert(list(graph.node).index(conv), onnx.helper.make_node(
                "DequantizeLinear", [w_q, w_scale, w_zp], [weight_name], name=weight_name, axis=axis))
        else:
            new_inits.append(numpy_helper.from_array((q - zero) * scale, weight_name))
        replacement = onnx.helper.make_node(integer_ops[conv.op_type], [quantize.input[0], weight_name],
                                            [mul.output[0]], name=conv.name.replace("_quant", ""))
        replacement.attribute.extend(conv.attribute)
        graph.node.insert(list(graph.node).index(conv), replacement)
        drop += [conv, cast, mul, scales]
        changed += 1
    for node in drop:
        graph.node.remove(node)
    graph.initializer.extend(new_inits)
    # quantizers and initializers nothing reads any more
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return changed


def main() -> None:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--matmuls", nargs="?", const=".", default=None, metavar="REGEX",
                        help="the MatMuls whose node name matches too (all of them without REGEX)")
    parser.add_argument("--int8-weights", action="store_true",
                        help="keep the weights INT8 in the file, dequantized when a session loads it")
    args = parser.parse_args()
    model = onnx.load(str(args.model))
    changed = float_convs(model, matmuls=args.matmuls, int8_weights=args.int8_weights)
    onnx.checker.check_model(model)
    onnx.save(model, str(args.out))
    print(f"{changed} nodes made float: {args.out}")


if __name__ == "__main__":
    main()
