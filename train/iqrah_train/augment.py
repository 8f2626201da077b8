"""Waveform and spectrogram augmentation, all numpy, all driven by an explicit Generator.

Waveform (each applied with its own probability): speed perturbation (resampling: tempo and
pitch together, as in Kaldi), a small extra pitch/formant shift (resample then linear time
stretch back to the tempo), random gain, synthetic reverberation (exponentially decaying noise
impulse response), band-limiting (telephone 300-3400 Hz band-pass or 4 kHz low-pass, as codecs
and phones do) and additive white/pink/brown noise at a random SNR. Spectrogram: SpecAugment
frequency and time masks (masked values set to 0, the per-utterance mean).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import soxr
from scipy import signal

SR = 16_000


@dataclass(frozen=True)
class AugmentConfig:
    p_speed: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    p_pitch: float = 0.2
    pitch: tuple[float, float] = (0.94, 1.06)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    p_reverb: float = 0.2
    rt60: tuple[float, float] = (0.1, 0.6)
    p_band: float = 0.25
    p_noise: float = 0.35
    snr_db: tuple[float, float] = (5.0, 30.0)
    freq_masks: int = 2
    freq_width: int = 12
    time_mask_every: int = 120  # one time mask per this many frames
    time_width: int = 15
    time_max_fraction: float = 0.15

    def to_dict(self) -> dict:
        return asdict(self)


@cache
def _filters():
    return {
        "phone": signal.butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos"),
        "lowpass4k": signal.butter(6, 4000, btype="lowpass", fs=SR, output="sos"),
        "lowpass3k": signal.butter(6, 3000, btype="lowpass", fs=SR, output="sos"),
    }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (shorter, higher)."""
    return soxr.resample(audio, SR, SR / factor, quality="QQ").astype(np.float32, copy=False)


def pitch_shift(audio: np.ndarray, factor: float) -> np.ndarray:
    """Cheap pitch/formant shift by ``factor`` keeping the duration: resample, then stretch the
    waveform back by linear interpolation (the interpolation undoes the tempo change and, being
    crude, a little of the pitch change too)."""
    y = speed(audio, factor)
    if y.size < 2:
        return audio
    pos = np.linspace(0, y.size - 1, audio.size)
    return np.interp(pos, np.arange(y.size), y).astype(np.float32)


def reverb(audio: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    n = max(1, int(rt60 * SR))
    t = np.arange(n) / SR
    ir = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    ir[0] = 1.0 / max(0.2, rng.uniform(0.2, 1.0))  # direct path
    ir = (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)
    wet = signal.fftconvolve(audio, ir)[: audio.size]
    return (wet * (_rms(audio) / _rms(wet))).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.integers(3)
    white = rng.standard_normal(n).astype(np.float32)
    if kind == 0:
        return white
    if kind == 1:  # pink-ish: one-pole low-pass mixed with white
        return (signal.lfilter([1.0], [1.0, -0.95], white) * 0.3 + white * 0.5).astype(np.float32)
    return signal.lfilter([1.0], [1.0, -0.995], white).astype(np.float32)  # brown


def augment_audio(audio: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = audio.astype(np.float32, copy=True)
    if rng.random() < cfg.p_speed:
        x = speed(x, rng.uniform(*cfg.speed))
    if rng.random() < cfg.p_pitch:
        x = pitch_shift(x, rng.uniform(*cfg.pitch))
    if rng.random() < cfg.p_reverb:
        x = reverb(x, rng, rng.uniform(*cfg.rt60))
    if rng.random() < cfg.p_band:
        name = ("phone", "lowpass4k", "lowpass3k")[rng.integers(3)]
        x = signal.sosfilt(_filters()[name], x).astype(np.float32)
    if rng.random() < cfg.p_noise:
        noise = coloured_noise(x.size, rng)
        snr = rng.uniform(*cfg.snr_db)
        x = x + noise * (_rms(x) / _rms(noise) * 10 ** (-snr / 20))
    x = x * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def spec_augment(feats: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = feats.copy()
    t, f = x.shape
    for _ in range(cfg.freq_masks):
        w = rng.integers(0, cfg.freq_width + 1)
        s = rng.integers(0, max(1, f - w))
        x[:, s : s + w] = 0.0
    budget = int(cfg.time_max_fraction * t)
    for _ in range(t // cfg.time_mask_every):
        w = int(min(rng.integers(0, cfg.time_width + 1), budget))
        if w <= 0:
            break
        s = rng.integers(0, max(1, t - w))
        x[s : s + w] = 0.0
        budget -= w
    return x
