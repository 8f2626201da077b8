"""A small conformer for phoneme CTC: log-mel (B, T, 80) -> log-softmax (B, T/4, vocab).

Two 3x3 stride-2 convolutions bring 10 ms feature frames to 40 ms, a linear layer to ``d``,
sinusoidal positions, then ``blocks`` conformer blocks (macaron feed-forward halves, multi-head
self-attention, depthwise-convolution module) and a linear CTC head. Plain ops only, so the
TorchScript ONNX exporter handles it at opset 17.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_mels: int = 80
    vocab: int = 43
    d: int = 144
    blocks: int = 6
    heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    sub_channels: int = 64
    dropout: float = 0.0
    conv_norm: str = "batch"  # "layer" or "batch": the norm after the depthwise convolution

    def to_dict(self) -> dict:
        return asdict(self)


def out_frames(n_frames):
    """Output frames for ``n_frames`` input feature frames (works on ints and tensors)."""
    t1 = (n_frames - 3) // 2 + 1
    return (t1 - 3) // 2 + 1


def padding_bias(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, 1, T) additive attention bias that keeps every frame from attending to padding;
    ``valid`` (B, T) is True on the frames of each input."""
    return torch.zeros(valid.shape, dtype=dtype).masked_fill(~valid, -1e4)[:, None, None, :]


class Subsample(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.sub_channels
        self.conv1 = nn.Conv2d(1, c, 3, stride=2)
        self.conv2 = nn.Conv2d(c, c, 3, stride=2)
        f = out_frames(cfg.n_mels)
        self.proj = nn.Linear(c * f, cfg.d)

    def forward(self, x):  # (B, T, F)
        x = F.silu(self.conv1(x.unsqueeze(1)))
        x = F.silu(self.conv2(x))  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.proj(x.transpose(1, 2).reshape(b, t, c * f))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d)
        self.l1 = nn.Linear(cfg.d, cfg.d * cfg.ff_mult)
        self.l2 = nn.Linear(cfg.d * cfg.ff_mult, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.l2(F.silu(self.l1(self.norm(x)))))


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d)
        self.qkv = nn.Linear(cfg.d, 3 * cfg.d)
        self.out = nn.Linear(cfg.d, cfg.d)
        self.heads = cfg.heads
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, bias):  # bias: (B, 1, 1, T) additive, or None
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.drop(self.out(y.transpose(1, 2).reshape(b, t, d)))


class ConvModule(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d)
        self.pw1 = nn.Conv1d(cfg.d, 2 * cfg.d, 1)
        self.dw = nn.Conv1d(cfg.d, cfg.d, cfg.conv_kernel, padding=cfg.conv_kernel // 2, groups=cfg.d)
        self.batch_norm = cfg.conv_norm == "batch"
        self.norm2 = nn.BatchNorm1d(cfg.d) if self.batch_norm else nn.LayerNorm(cfg.d)
        self.pw2 = nn.Conv1d(cfg.d, cfg.d, 1)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, keep):  # keep: (B, T, 1) float mask or None
        y = self.norm(x)
        if keep is not None:
            y = y * keep
        y = F.glu(self.pw1(y.transpose(1, 2)), dim=1)
        if keep is not None:
            y = y * keep.transpose(1, 2)
        y = self.dw(y)
        if self.batch_norm:
            y = F.silu(self.norm2(y))
        else:
            y = F.silu(self.norm2(y.transpose(1, 2))).transpose(1, 2)
        return self.drop(self.pw2(y).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ff1 = FeedForward(cfg)
        self.att = SelfAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ff2 = FeedForward(cfg)
        self.norm = nn.LayerNorm(cfg.d)

    def forward(self, x, bias, keep):
        x = x + 0.5 * self.ff1(x)
        x = x + self.att(x, bias)
        x = x + self.conv(x, keep)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class Conformer(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.sub = Subsample(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.blocks))
        self.head = nn.Linear(cfg.d, cfg.vocab)
        half = torch.arange(0, cfg.d, 2, dtype=torch.float32) * (-math.log(10000.0) / cfg.d)
        self.register_buffer("inv_freq", torch.exp(half), persistent=False)

    def positions(self, t: int) -> torch.Tensor:
        """(t, d) sinusoidal positions, sin and cos interleaved, computed for any length."""
        ang = torch.arange(t, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        return torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1).reshape(t, self.cfg.d)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """feats (B, T, n_mels) -> log-probs (B, T', vocab); ``lengths`` in feature frames."""
        x = self.sub(feats)
        t = x.shape[1]
        x = self.drop(x * math.sqrt(self.cfg.d) + self.positions(t))  # scaled as in ESPnet
        bias = keep = None
        if lengths is not None:
            olen = out_frames(lengths)
            valid = torch.arange(t, device=x.device)[None, :] < olen[:, None]  # (B, T')
            bias = padding_bias(valid, x.dtype)
            keep = valid.to(x.dtype)[:, :, None]
        for blk in self.blocks:
            x = blk(x, bias, keep)
        return torch.log_softmax(self.head(x), dim=-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
