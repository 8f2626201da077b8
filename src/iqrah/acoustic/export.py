"""``iqrah model export``: a muaalem checkpoint -> ONNX (opset 17, dynamic batch and time) + card.

The export folder holds ``muaalem.onnx`` (weights in ``muaalem.onnx.data`` when the model is
over 2 GB, the protobuf limit), ``muaalem.json`` (levels, frame length, vocabulary, source) and
the checkpoint's ``vocab.json`` and ``preprocessor_config.json``, so ``MuaalemOnnxModel`` needs
nothing else (and no torch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

PROTOBUF_LIMIT = 2 * 1024**3


def export_muaalem(name_or_path: str, out_dir: str | Path, *, opset: int = 17) -> Path:
    import torch

    from .muaalem import MuaalemTorchModel

    model = MuaalemTorchModel(name_or_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "muaalem.onnx"

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model.model

        def forward(self, input_features, attention_mask):
            return model.forward(input_features, attention_mask)

    feats, mask = model.features(np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1)
    axes = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"}}
    axes.update({level: {0: "batch", 1: "time"} for level in model.levels})
    with torch.inference_mode():
        torch.onnx.export(Graph().eval(), (torch.from_numpy(feats), torch.from_numpy(mask)), str(onnx_path),
                          input_names=["input_features", "attention_mask"], output_names=model.levels,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    weights = sum(p.numel() * p.element_size() for p in model.model.parameters())
    if weights > PROTOBUF_LIMIT:  # keep the graph loadable: weights beside it
        import onnx

        graph = onnx.load(str(onnx_path))
        onnx.save_model(graph, str(onnx_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=onnx_path.name + ".data")
    for name in ("vocab.json", "preprocessor_config.json"):
        shutil.copy(model.folder / name, out_dir / name)
    card = {"name": f"muaalem:{name_or_path}", "backend": "onnx", "levels": model.levels,
            "frame_seconds": model.frame_seconds, "opset": opset,
            "parameters": int(sum(p.numel() for p in model.model.parameters())),
            "vocabulary": list(model.vocab.tokens), "source": str(model.folder)}
    (out_dir / "muaalem.json").write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")
    return onnx_path
