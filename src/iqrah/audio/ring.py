"""A fixed-capacity ring buffer of samples: the last N seconds of a live stream.

Capacity is allocated once; ``push`` copies into at most two slices and never reallocates, so a
long session keeps constant memory. A lock makes one writer and many readers safe.
"""

from __future__ import annotations

import threading

import numpy as np

from .decode import SAMPLE_RATE


class RingBuffer:
    def __init__(self, seconds: float = 10.0, sample_rate: int = SAMPLE_RATE,
                 dtype: np.dtype = np.float32):
        self.capacity = int(round(seconds * sample_rate))
        if self.capacity <= 0:
            raise ValueError("ring buffer capacity must be at least one sample")
        self._data = np.zeros(self.capacity, dtype=dtype)
        self._write = 0  # next index to write
        self._total = 0  # samples pushed since creation: the stream position
        self._lock = threading.RLock()

    def push(self, samples: np.ndarray) -> None:
        """Append samples; the oldest are overwritten once the buffer is full."""
        samples = np.asarray(samples, dtype=self._data.dtype).reshape(-1)
        with self._lock:
            n = samples.size
            self._total += n
            if n >= self.capacity:
                self._data[:] = samples[-self.capacity:]
                self._write = 0
                return
            first = min(n, self.capacity - self._write)
            self._data[self._write:self._write + first] = samples[:first]
            self._data[:n - first] = samples[first:]
            self._write = (self._write + n) % self.capacity

    def __len__(self) -> int:
        """Samples currently held (at most the capacity)."""
        return min(self._total, self.capacity)

    @property
    def total(self) -> int:
        """Samples pushed since creation: the stream position of the newest sample + 1."""
        return self._total

    def latest(self, n: int | None = None) -> np.ndarray:
        """A copy of the newest ``n`` samples (all held samples if None), oldest first."""
        with self._lock:
            held = min(self._total, self.capacity)
            n = held if n is None else min(n, held)
            start = (self._write - n) % self.capacity
            if start + n <= self.capacity:
                return self._data[start:start + n].copy()
            return np.concatenate((self._data[start:], self._data[:self._write]))

    def since(self, position: int) -> np.ndarray:
        """A copy of the samples from absolute stream ``position`` to now.

        Raises ValueError if that audio has already been overwritten.
        """
        with self._lock:
            oldest = self._total - min(self._total, self.capacity)
            if position < oldest:
                raise ValueError(f"samples from {position} are gone: the buffer holds {oldest} onwards")
            return self.latest(max(0, self._total - position))

    def clear(self) -> None:
        with self._lock:
            self._write = 0
            self._total = 0
