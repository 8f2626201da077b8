"""Pitch (F0) of a recitation: YIN, vectorised over frames, offline or as audio arrives.

The melody of a recitation (maqam, rise and fall across an ayah) is carried by F0. YIN (de
Cheveigné and Kawahara, 2002) finds the period as the first dip of the cumulative-mean-normalised
difference function under a threshold; the dip's depth says how periodic the frame is. Frames
are 32 ms every 20 ms, periods from 60 to 500 Hz (speaking men to children's chant).
``PitchTracker`` gives, chunk by chunk, exactly the frames ``estimate_pitch`` gives for the whole
recording, so the stream's pitch and the report's agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
HOP = 320  # 20 ms between frames (a contour, not a phonetic event)
WINDOW = 512  # 32 ms compared with itself one period later
F0_MIN, F0_MAX = 60.0, 500.0
THRESHOLD = 0.2  # a dip of the normalised difference under this is a period (YIN's 0.1-0.2)
QUIET = 1e-4  # frames with less RMS are silence, never voiced
LAG_MIN, LAG_MAX = int(SAMPLE_RATE / F0_MAX), int(np.ceil(SAMPLE_RATE / F0_MIN))
SPAN = WINDOW + LAG_MAX  # samples one frame needs
_FFT = 1 << int(np.ceil(np.log2(SPAN)))  # a frame's window against the frame: no wrap-around


@dataclass(frozen=True)
class Pitch:
    """``f0`` in Hz per frame (NaN where unvoiced), ``periodicity`` 0-1, ``times`` (s) of the
    frames' centres."""

    times: np.ndarray
    f0: np.ndarray
    periodicity: np.ndarray

    @classmethod
    def empty(cls) -> "Pitch":
        return cls(np.zeros(0), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.f0)

    def concat(self, other: "Pitch") -> "Pitch":
        return Pitch(*(np.concatenate([a, b]) for a, b in zip(
            (self.times, self.f0, self.periodicity), (other.times, other.f0, other.periodicity))))


def frame_count(n_samples: int) -> int:
    return 0 if n_samples < SPAN else 1 + (n_samples - SPAN) // HOP


def _frames_pitch(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """YIN on (n, SPAN) frames -> (f0 with NaN where unvoiced, periodicity)."""
    n = frames.shape[0]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    frames = frames - frames[:, :WINDOW].mean(axis=1, keepdims=True)
    head = np.fft.rfft(frames[:, :WINDOW], _FFT)
    whole = np.fft.rfft(frames, _FFT)
    corr = np.fft.irfft(np.conj(head) * whole, _FFT)[:, : LAG_MAX + 1]  # sum_j x_j x_{j+lag}
    power = np.concatenate([np.zeros((n, 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(LAG_MAX + 1)
    energy0 = power[:, WINDOW][:, None]
    energy_lag = power[:, lags + WINDOW] - power[:, lags]
    diff = np.maximum(energy0 + energy_lag - 2 * corr, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    norm = np.ones_like(diff)
    norm[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(cum, 1e-12)

    f0 = np.full(n, np.nan)
    periodicity = np.zeros(n)
    rms = np.sqrt(energy0[:, 0] / WINDOW)
    below = norm[:, LAG_MIN:LAG_MAX] < THRESHOLD
    rows = np.flatnonzero(below.any(axis=1) & (rms >= QUIET))
    if rows.size == 0:
        return f0, periodicity
    lag = LAG_MIN + np.argmax(below[rows], axis=1)
    while True:  # from the first lag under the threshold down to the bottom of its dip
        step = (lag + 1 < LAG_MAX) & (norm[rows, np.minimum(lag + 1, LAG_MAX)] < norm[rows, lag])
        if not step.any():
            break
        lag = lag + step
    a, b, c = norm[rows, lag - 1], norm[rows, lag], norm[rows, lag + 1]
    den = a - 2 * b + c
    shift = np.where(den > 1e-12, 0.5 * (a - c) / np.where(den > 1e-12, den, 1.0), 0.0)
    f0[rows] = SAMPLE_RATE / (lag + np.clip(shift, -1, 1))
    periodicity[rows] = np.clip(1 - b, 0, 1)
    return f0, periodicity


def _pitch_of(samples: np.ndarray, first_frame: int) -> Pitch:
    count = frame_count(samples.size)
    if count == 0:
        return Pitch.empty()
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float32), SPAN)[::HOP][:count]
    f0, periodicity = _frames_pitch(frames)
    times = ((first_frame + np.arange(count)) * HOP + WINDOW / 2) / SAMPLE_RATE
    return Pitch(times, f0, periodicity)


def estimate_pitch(samples: np.ndarray) -> Pitch:
    """F0 of 16 kHz mono samples, one frame every 20 ms."""
    return _pitch_of(np.asarray(samples, dtype=np.float32).reshape(-1), 0)


class PitchTracker:
    """``feed(pcm) -> Pitch`` of the frames the new samples complete: the same frames, the same
    values, as ``estimate_pitch`` of everything fed so far."""

    def __init__(self) -> None:
        self._tail = np.zeros(0, np.float32)  # samples from the next frame's start on
        self._next = 0  # index of the next frame

    def feed(self, pcm: np.ndarray) -> Pitch:
        buffer = np.concatenate([self._tail, np.asarray(pcm, dtype=np.float32).reshape(-1)])
        pitch = _pitch_of(buffer, self._next)
        self._next += len(pitch)
        self._tail = buffer[len(pitch) * HOP :]
        return pitch


def _median(values: np.ndarray) -> float:
    """np.median costs ~30 us a call; a contour asks for hundreds of medians of 2-3 values."""
    v = np.sort(values)
    return float(v[(v.size - 1) // 2] + v[v.size // 2]) / 2


def pitch_summary(pitch: Pitch, start: float | None, end: float | None, step_s: float = 0.05) -> dict | None:
    """What a word's melody was: median and range of F0 over its voiced frames, the share of
    voiced frames, and the contour (median F0 every ``step_s``, None where unvoiced)."""
    if start is None or end is None or not np.isfinite(start) or not np.isfinite(end) or end <= start:
        return None
    inside = (pitch.times >= start) & (pitch.times < end)
    if not inside.any():
        return None
    f0, times = pitch.f0[inside], pitch.times[inside]
    voiced = np.isfinite(f0)
    bins = ((times - start) // step_s).astype(int)  # ascending, as the frames are
    contour: list[float | None] = [None] * (int(bins[-1]) + 1)
    edges = np.flatnonzero(np.diff(bins[voiced])) + 1
    for group_bins, values in zip(np.split(bins[voiced], edges), np.split(f0[voiced], edges)):
        if values.size:
            contour[int(group_bins[0])] = round(_median(values), 1)
    summary = {"voiced": round(float(voiced.mean()), 2), "contour_hz": contour, "step_s": step_s,
               "median_hz": None, "range_hz": None}
    if voiced.any():
        summary["median_hz"] = round(_median(f0[voiced]), 1)
        summary["range_hz"] = [round(float(np.percentile(f0[voiced], 5)), 1),
                               round(float(np.percentile(f0[voiced], 95)), 1)]
    return summary
