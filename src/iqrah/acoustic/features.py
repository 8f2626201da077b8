"""Log-mel features in pure numpy, used identically by the training recipe and at inference.

``log_mel(audio)`` turns 16 kHz mono float audio into ``(frames, n_mels)`` float32: a Hann
window of ``win`` samples every ``hop`` samples (no centring: frame ``i`` covers samples
``i*hop .. i*hop+win``), power spectrum from an ``n_fft``-point rfft, triangular mel filters
(HTK mel scale) between ``fmin`` and ``fmax``, natural log with a floor, then (by default)
normalised per utterance: each mel bin to zero mean and unit variance over the frames.

``style="whisper"`` computes the features OpenAI's Whisper encoder was trained on, so that its
pretrained weights can hear through them: frames centred on ``i*hop`` (reflect padding, the last
frame dropped, so ``n // hop`` frames), Slaney-scale area-normalised mel filters from 0 Hz to
Nyquist, log10 floored at 8 below the input's maximum, then ``(x + 4) / 4``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class FeatureSettings:
    sample_rate: int = 16_000
    n_fft: int = 512
    win: int = 400  # 25 ms
    hop: int = 160  # 10 ms
    n_mels: int = 80
    fmin: float = 20.0
    fmax: float = 7_600.0
    log_floor: float = 1e-10
    #: "utterance": per-bin mean/variance over the frames of the input; "none": raw log-mel
    normalise: str = "utterance"
    #: "iqrah" (as above) or "whisper" (Whisper's own log-mel, see the module docstring)
    style: str = "iqrah"

    def to_dict(self) -> dict:
        return asdict(self)

    def frames(self, n_samples: int) -> int:
        """Number of feature frames ``log_mel`` returns for ``n_samples`` samples."""
        if self.style == "whisper":
            return max(self.win, n_samples) // self.hop
        return 1 + max(0, n_samples - self.win) // self.hop


DEFAULT_FEATURES = FeatureSettings()
WHISPER_FEATURES = FeatureSettings(n_fft=400, fmin=0.0, fmax=8_000.0, normalise="none", style="whisper")


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def _hz_to_slaney(hz):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, hz * 3.0 / 200.0)


def _slaney_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * 200.0 / 3.0)


def _slaney_filterbank(settings: FeatureSettings) -> np.ndarray:
    """Triangles on the Slaney scale, each scaled to unit area (librosa's ``norm="slaney"``)."""
    freqs = np.linspace(0.0, settings.sample_rate / 2, settings.n_fft // 2 + 1)
    edges = _slaney_to_hz(np.linspace(_hz_to_slaney(settings.fmin), _hz_to_slaney(settings.fmax),
                                      settings.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    up = -ramps[: settings.n_mels] / widths[: settings.n_mels, None]
    down = ramps[2:] / widths[1:, None]
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (edges[2:] - edges[: settings.n_mels]))[:, None]
    return fb.T


def _htk_filterbank(settings: FeatureSettings) -> np.ndarray:
    """Triangles on the HTK mel scale, each with peak 1."""
    n_bins = settings.n_fft // 2 + 1
    freqs = np.linspace(0.0, settings.sample_rate / 2, n_bins)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(settings.fmin), _hz_to_mel(settings.fmax),
                                   settings.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down)).T


@lru_cache(maxsize=8)
def mel_filterbank(settings: FeatureSettings = DEFAULT_FEATURES) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float32 matrix of triangular mel filters (HTK: peak 1; Whisper:
    Slaney, unit area)."""
    build = _slaney_filterbank if settings.style == "whisper" else _htk_filterbank
    fb = build(settings).astype(np.float32)
    fb.setflags(write=False)
    return fb


@lru_cache(maxsize=8)
def _window(settings: FeatureSettings) -> np.ndarray:
    n = np.arange(settings.win)
    w = (0.5 - 0.5 * np.cos(2 * np.pi * n / settings.win)).astype(np.float32)  # periodic Hann
    w.setflags(write=False)
    return w


def log_mel(audio_16k: np.ndarray, settings: FeatureSettings = DEFAULT_FEATURES) -> np.ndarray:
    """(frames, n_mels) float32 log-mel features of mono float audio at ``sample_rate``.

    Audio shorter than one window is zero-padded to one frame.
    """
    audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
    if audio.size < settings.win:
        audio = np.pad(audio, (0, settings.win - audio.size))
    if settings.style == "whisper":
        return _whisper_log_mel(audio, settings)
    if settings.style != "iqrah":
        raise ValueError(f"unknown feature style {settings.style!r}")
    mel = _power_spectrum(audio, settings) @ mel_filterbank(settings)
    feats = np.log(np.maximum(mel, settings.log_floor))
    if settings.normalise == "utterance":
        feats -= feats.mean(axis=0, keepdims=True)
        feats /= feats.std(axis=0, keepdims=True) + 1e-5
    elif settings.normalise != "none":
        raise ValueError(f"unknown normalise {settings.normalise!r}")
    return np.ascontiguousarray(feats, dtype=np.float32)


def _power_spectrum(audio: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """(frames, n_fft // 2 + 1) power of Hann-windowed frames: frame ``i`` starts at sample
    ``i * hop`` of ``audio`` (the Whisper style pads it first, so that frames are centred)."""
    n_frames = settings.frames(audio.size)
    if settings.style == "whisper":
        audio = np.pad(audio, (settings.n_fft // 2, settings.n_fft // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(audio, settings.win)[:: settings.hop][:n_frames]
    spec = np.fft.rfft(frames * _window(settings), n=settings.n_fft, axis=1)
    return (spec.real**2 + spec.imag**2).astype(np.float32, copy=False)


def _whisper_log_mel(audio: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    feats = np.log10(np.maximum(_power_spectrum(audio, settings) @ mel_filterbank(settings), settings.log_floor))
    feats = np.maximum(feats, feats.max() - 8.0)
    return np.ascontiguousarray((feats + 4.0) / 4.0, dtype=np.float32)
