"""Phoneme CTC on a pretrained encoder: a Whisper encoder's first layers, then a small conformer head.

The encoder's lower layers stay as pretrained (so its hearing of many voices is kept and a CPU can
train the rest in minutes); the head and, with ``tuned`` > 0, the encoder's top layers are trained.
The frozen layers' output can be computed once for the whole train split (``iqrah_train.encode``)
and training then starts from it (``from_frozen``). Two 20 ms encoder frames are stacked into one
40 ms output frame, the frame rate every other part of iqrah works at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .model import ConformerBlock, ModelConfig, padding_bias
from .whisper_encoder import EncoderConfig, WhisperEncoder, encoder_frames

ARCH = "whisper-ctc"


@dataclass(frozen=True)
class WhisperCTCConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tuned: int = 0  # the encoder's top layers trained with the head (the others stay as pretrained)
    stack: int = 2  # encoder frames per output frame: 40 ms
    d: int = 192
    blocks: int = 2
    heads: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1
    vocab: int = 43

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WhisperCTCConfig:
        return cls(**{**d, "encoder": EncoderConfig(**d["encoder"])})


def grows(old: dict, new: WhisperCTCConfig) -> bool:
    """Whether ``new`` is the configuration ``old`` (a checkpoint's) with more of the encoder's
    layers on top, all of them tuned: the head keeps its shape and reads the new top layer."""
    added = new.encoder.layers - old["encoder"]["layers"]
    return (added > 0 and new.tuned >= added + old["tuned"]
            and {**old, "encoder": None, "tuned": None} == {**new.to_dict(), "encoder": None, "tuned": None}
            and {**old["encoder"], "layers": None} == {**new.encoder.to_dict(), "layers": None})


def out_frames(n_feature_frames, stack: int = 2):
    """40 ms output frames for ``n_feature_frames`` 10 ms Whisper feature frames (ints or tensors)."""
    return encoder_frames(n_feature_frames) // stack


class WhisperCTC(nn.Module):
    def __init__(self, cfg: WhisperCTCConfig = WhisperCTCConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = WhisperEncoder(cfg.encoder)
        self.encoder.requires_grad_(False)
        self.encoder.blocks[self.frozen_layers :].requires_grad_(True)
        d_in = cfg.encoder.d
        head = ModelConfig(n_mels=d_in, vocab=cfg.vocab, d=cfg.d, blocks=cfg.blocks, heads=cfg.heads,
                           conv_kernel=cfg.conv_kernel, dropout=cfg.dropout, conv_norm="layer")
        self.in_norm = nn.LayerNorm(d_in)
        self.proj = nn.Linear(d_in * cfg.stack, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(head) for _ in range(cfg.blocks))
        self.head = nn.Linear(cfg.d, cfg.vocab)

    @property
    def frozen_layers(self) -> int:
        return self.cfg.encoder.layers - self.cfg.tuned

    def load_pretrained(self, weights: Path | list[Path]) -> WhisperCTC:
        self.encoder.load_ctranslate2(weights)
        return self

    def out_frames(self, n_feature_frames):
        return out_frames(n_feature_frames, self.cfg.stack)

    def grow_from(self, state: dict, old_layers: int) -> list[int]:
        """Load a checkpoint with ``old_layers`` encoder layers into this deeper model. Each
        added layer keeps its pretrained attention and feed-forward inputs but starts with its
        two residual outputs at zero, so the model computes exactly what the checkpoint did and
        training moves on from there (a pretrained layer dropped in as is would hand the
        trained head features it has never seen). Returns the added layers' indices."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        added = list(range(old_layers, self.cfg.encoder.layers))
        expected = {k for k in self.state_dict() if any(k.startswith(f"encoder.blocks.{i}.") for i in added)}
        if unexpected or set(missing) != expected:
            raise ValueError(f"not a shallower checkpoint: missing {sorted(set(missing) - expected)}, "
                             f"unexpected {unexpected}")
        with torch.no_grad():
            for i in added:
                for layer in (self.encoder.blocks[i].out, self.encoder.blocks[i].fc2):
                    layer.weight.zero_()
                    layer.bias.zero_()
        return added

    def train(self, mode: bool = True) -> WhisperCTC:
        super().train(mode)
        self.encoder.eval()  # Whisper's layers have no dropout; the frozen ones stay as pretrained
        return self

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats (B, T, 80) Whisper log-mel -> log-probs (B, T // 4, vocab); ``lengths`` in feature frames."""
        with torch.no_grad():
            x = self.encoder(feats, lengths, layers=self.frozen_layers)
        return self.from_frozen(x, None if lengths is None else encoder_frames(lengths))

    def from_frozen(self, x: torch.Tensor, n_frames: torch.Tensor | None = None) -> torch.Tensor:
        """The trained part: the frozen layers' output (B, T, d), 20 ms frames, ``n_frames`` valid in
        each item -> log-probs (B, T // stack, vocab)."""
        x = self.encoder.run_blocks(x, n_frames, self.frozen_layers)
        x = self.in_norm(x)
        b, t, c = x.shape
        t_out = t // self.cfg.stack
        x = x[:, : t_out * self.cfg.stack].reshape(b, t_out, c * self.cfg.stack)
        x = self.drop(self.proj(x))
        bias = keep = None
        if n_frames is not None:
            valid = torch.arange(t_out)[None, :] < (n_frames // self.cfg.stack)[:, None]
            bias = padding_bias(valid, x.dtype)
            keep = valid.to(x.dtype)[:, :, None]
        for blk in self.blocks:
            x = blk(x, bias, keep)
        return torch.log_softmax(self.head(x), dim=-1)
