"""``iqrah model export``: a muaalem checkpoint -> ONNX (opset 17, dynamic batch and time) + card.

The export folder holds ``muaalem.onnx`` (weights in ``muaalem.onnx.data`` when the model is
over 2 GB, the protobuf limit), ``muaalem.json`` (levels, frame length, vocabulary, source) and
the checkpoint's ``vocab.json`` and ``preprocessor_config.json``, so ``MuaalemOnnxModel`` needs
nothing else (and no torch).

Wav2Vec2-BERT's relative position scores are exported in a cheaper, equal form
(``_relative_key_attention``): transformers builds a (time, time, head size) tensor of position
embeddings per layer (256 MB for a 20 s window) and contracts it with the queries; here the queries
meet the 73 distance embeddings first and each score picks its distance.
"""

from __future__ import annotations

import json
import math
import shutil
import types
from pathlib import Path

import numpy as np

PROTOBUF_LIMIT = 2 * 1024**3


def export_muaalem(name_or_path: str, out_dir: str | Path, *, opset: int = 17) -> Path:
    import torch

    from .muaalem import MuaalemTorchModel

    model = MuaalemTorchModel(name_or_path)
    for module in model.model.modules():  # this instance only: it is made for the export
        if getattr(module, "position_embeddings_type", None) == "relative_key" and hasattr(module, "linear_q"):
            module.forward = types.MethodType(_relative_key_attention, module)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "muaalem.onnx"
    before = set(out_dir.iterdir())

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
        for leftover in set(out_dir.iterdir()) - before - {onnx_path, onnx_path.with_name(onnx_path.name + ".data")}:
            leftover.unlink()  # the exporter's one file per tensor, now all in muaalem.onnx.data
    for name in ("vocab.json", "preprocessor_config.json"):
        shutil.copy(model.folder / name, out_dir / name)
    card = {"name": f"muaalem:{name_or_path}", "backend": "onnx", "levels": model.levels,
            "frame_seconds": model.frame_seconds, "opset": opset,
            "parameters": int(sum(p.numel() for p in model.model.parameters())),
            "vocabulary": list(model.vocab.tokens), "source": str(model.folder)}
    (out_dir / "muaalem.json").write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")
    return onnx_path


def _relative_key_attention(self, hidden_states, attention_mask=None, relative_position_embeddings=None,
                            output_attentions=False):
    """``Wav2Vec2BertSelfAttention.forward`` for ``relative_key`` position embeddings, equal up to
    rounding: score[l, r] += q[l] . E[clamp(r - l)] is q[l] . E[k] for all k first (time x 73
    per head), then a gather, instead of a (time, time, head size) tensor."""
    import torch

    batch, time, _ = hidden_states.size()

    def heads(linear):
        return linear(hidden_states).view(batch, -1, self.num_heads, self.head_size).transpose(1, 2)

    query, key, value = heads(self.linear_q), heads(self.linear_k), heads(self.linear_v)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(self.head_size)
    positions = torch.arange(time, dtype=torch.long, device=hidden_states.device)
    distance = torch.clamp(positions.view(1, -1) - positions.view(-1, 1), -self.left_max_position_embeddings,
                           self.right_max_position_embeddings) + self.left_max_position_embeddings
    embeddings = self.distance_embedding.weight.to(dtype=query.dtype)
    n = embeddings.shape[0]
    per_distance = torch.matmul(query, embeddings.t()).reshape(batch, self.num_heads, time * n)
    flat = (positions.view(-1, 1) * n + distance).reshape(-1)  # row l, column distance[l, r]
    relative = per_distance.index_select(2, flat).view(batch, self.num_heads, time, time)
    scores = scores + relative / math.sqrt(self.head_size)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = self.dropout(torch.softmax(scores, dim=-1))
    hidden = torch.matmul(probs, value).transpose(1, 2).reshape(batch, -1, self.num_heads * self.head_size)
    return self.linear_out(hidden), probs
