"""Small signal measures the validators need: short-time energy and low-band (nasal) energy."""

from __future__ import annotations

import numpy as np

from ..audio.energy import frame_db

HOP_S = 0.005
WIN_S = 0.015


def energy_db(audio: np.ndarray, sample_rate: int, start_s: float, end_s: float) -> np.ndarray:
    """Short-time energy (dB) every 5 ms over [start_s, end_s)."""
    hop, win = int(HOP_S * sample_rate), int(WIN_S * sample_rate)
    if not (np.isfinite(start_s) and np.isfinite(end_s)):  # a unit not reached yet
        return np.zeros(0)
    a = max(0, int(start_s * sample_rate))
    b = min(audio.size, int(end_s * sample_rate))
    x = audio[a:b]
    if x.size < win:
        return np.zeros(0)
    return frame_db(x, hop, win)


def low_band_ratio(audio: np.ndarray, sample_rate: int, start_s: float, end_s: float,
                   cutoff_hz: float = 400.0) -> float:
    """Share of the energy below ``cutoff_hz``: a nasal murmur keeps most energy low."""
    if not (np.isfinite(start_s) and np.isfinite(end_s)):
        return 0.0
    a = max(0, int(start_s * sample_rate))
    b = min(audio.size, int(end_s * sample_rate))
    x = audio[a:b].astype(np.float64)
    if x.size < 64:
        return 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / sample_rate)
    total = spectrum[freqs > 50].sum()
    return float(spectrum[(freqs > 50) & (freqs < cutoff_hz)].sum() / total) if total > 0 else 0.0
