"""Audio surgery for making recordings with known errors: WSOLA time-stretching and splicing.

WSOLA (waveform-similarity overlap-add) changes duration without changing pitch: it overlap-adds
windowed frames taken at a different hop than it writes them, and shifts each frame by up to
``tolerance`` to where it best continues the previous one, so held vowels stay smooth.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
FADE_S = 0.008


def time_stretch(x: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE,
                 frame_s: float = 0.03, tolerance_s: float = 0.01) -> np.ndarray:
    """``x`` played ``factor`` times as long (factor 2: twice the duration, same pitch)."""
    x = np.asarray(x, dtype=np.float32)
    n = int(frame_s * sample_rate)
    if x.size < 2 * n or factor <= 0:
        raise ValueError("segment too short to stretch, or factor not positive")
    synth_hop = n // 2
    ana_hop = synth_hop / factor
    tol = int(tolerance_s * sample_rate)
    window = np.hanning(n).astype(np.float32)
    out_len = int(round(x.size * factor))
    padded = np.concatenate((np.zeros(tol, np.float32), x, np.zeros(n + tol, np.float32)))
    y = np.zeros(out_len + n, dtype=np.float32)
    norm = np.zeros(out_len + n, dtype=np.float32)
    prev = 0
    for k in range(out_len // synth_hop + 1):
        centre = int(k * ana_hop) + tol
        # the frame and its search span, and the natural continuation of the last frame, must fit
        if centre + n + tol > padded.size or prev + synth_hop + n > padded.size:
            break
        if k == 0:
            start = centre
        else:
            natural = padded[prev + synth_hop: prev + synth_hop + n]
            candidates = np.lib.stride_tricks.sliding_window_view(padded[centre - tol: centre + tol + n], n)
            start = centre - tol + int(np.argmax(candidates @ natural))
        y[k * synth_hop: k * synth_hop + n] += padded[start:start + n] * window
        norm[k * synth_hop: k * synth_hop + n] += window
        prev = start
    y = y[:out_len] / np.maximum(norm[:out_len], 1e-3)
    return y.astype(np.float32)


def crossfade_join(parts: list[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Concatenate with short linear crossfades so cuts do not click."""
    fade = int(FADE_S * sample_rate)
    out = np.asarray(parts[0], dtype=np.float32)
    for part in parts[1:]:
        part = np.asarray(part, dtype=np.float32)
        k = min(fade, out.size, part.size)
        if k == 0:
            out = np.concatenate((out, part))
            continue
        ramp = np.linspace(0, 1, k, dtype=np.float32)
        middle = out[-k:] * (1 - ramp) + part[:k] * ramp
        out = np.concatenate((out[:-k], middle, part[k:]))
    return out


def stretch_span(x: np.ndarray, start_s: float, end_s: float, factor: float,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` with [start_s, end_s) time-stretched by ``factor``."""
    a, b = int(start_s * sample_rate), int(end_s * sample_rate)
    return crossfade_join([x[:a], time_stretch(x[a:b], factor, sample_rate), x[b:]], sample_rate)
