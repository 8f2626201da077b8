"""Turn the INT8 convolutions of a dynamically quantized model back into float convolutions.

onnxruntime has no fast kernel for ``ConvInteger``: in the shipped model its 20 convolutions
took 8 of the 15 ms that a 2 s window costs on one thread, while the 38 quantized MatMuls took
1.2 ms. ``export.py`` now quantizes MatMuls only; this rewrites an already shipped model the same
way without its float checkpoint: each ``DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul``
becomes one ``Conv`` whose weights are the INT8 weights dequantized (the weights the INT8 model
computes with, so only the rounding of the activations goes away).

    PYTHONPATH=train .venv/bin/python -m iqrah_train.float_convs --model IN.onnx --out OUT.onnx [--matmuls]
"""

from __future__ import annotations

import argparse

import numpy as np


def float_convs(model, matmuls: bool = False):
    """Rewrite ``model`` (an onnx ModelProto) in place; returns how many nodes changed. With
    ``matmuls`` the MatMuls become float too: a float model, whose batches are computed exactly as
    their items one by one (dynamic quantization scales activations by the whole batch)."""
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
    integer_ops = {"ConvInteger": "Conv", "MatMulInteger": "MatMul"} if matmuls else {"ConvInteger": "Conv"}
    for conv in [n for n in graph.node if n.op_type in integer_ops]:
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
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--matmuls", action="store_true", help="the MatMuls too: an all-float model")
    args = parser.parse_args()
    model = onnx.load(args.model)
    changed = float_convs(model, matmuls=args.matmuls)
    onnx.checker.check_model(model)
    onnx.save(model, args.out)
    print(f"{changed} nodes made float: {args.out}")


if __name__ == "__main__":
    main()
