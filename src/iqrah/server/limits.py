"""Rates and counts per client: token buckets, open connections, connections and uploads a minute.

A client is its API key when it gave a valid one, else its IP address (behind a reverse proxy,
run uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` so that this is the client's
address, not the proxy's).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

from .config import ServerConfig

MAX_TRACKED = 10_000  # clients whose rates are remembered


class Bucket:
    """``capacity`` tokens, refilled at ``rate`` a second. A request larger than the capacity is
    granted when the bucket is full (it then owes the rest), so nothing is refused for ever."""

    def __init__(self, rate: float, capacity: float):
        self.rate, self.capacity = rate, capacity
        self.tokens = capacity
        self.at = time.monotonic()

    def take(self, amount: float) -> float:
        """Take ``amount``: 0.0 when granted, else the seconds until it would be."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= min(amount, self.capacity):
            self.tokens -= amount
            return 0.0
        return (min(amount, self.capacity) - self.tokens) / self.rate if self.rate > 0 else math.inf

    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.at) * self.rate >= self.capacity


class ClientLimits:
    """Per-client limits of one server process (``0`` in the config: no limit). Each check
    returns None when allowed, else a message saying what was exceeded."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.open: Counter[str] = Counter()
        self.connects: dict[str, Bucket] = {}
        self.uploads: dict[str, Bucket] = {}
        self.audio_sent: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def connect(self, client: str) -> str | None:
        """Count a new connection of ``client`` if it may open one (then call ``disconnect``)."""
        limit = self.config.client_connections
        with self._lock:
            if limit and self.open[client] >= limit:
                return f"at most {limit} connections at once per client"
            refused = self._rate(self.connects, client, self.config.client_connects_per_minute, "connections")
            if refused is None:
                self.open[client] += 1
            return refused

    def disconnect(self, client: str) -> None:
        with self._lock:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]

    def upload(self, client: str) -> str | None:
        with self._lock:
            return self._rate(self.uploads, client, self.config.client_uploads_per_minute, "uploads")

    def audio(self, client: str, seconds: float) -> float:
        """0.0 when ``client`` may send ``seconds`` more of audio now (all its streams together),
        else how long to wait."""
        per_minute = self.config.client_audio_per_minute
        if not per_minute:
            return 0.0
        with self._lock:
            self._forget_some(self.audio_sent)
            return self.audio_sent.setdefault(client, Bucket(per_minute / 60, per_minute)).take(seconds)

    @staticmethod
    def _forget_some(buckets: dict[str, Bucket]) -> None:
        """Past MAX_TRACKED clients, forget those whose bucket is full again (they lose nothing),
        then the longest known, down to half: memory stays bounded however many addresses come."""
        if len(buckets) >= MAX_TRACKED:
            for name in [name for name, bucket in buckets.items() if bucket.full()]:
                del buckets[name]
            for name in list(buckets)[: max(0, len(buckets) - MAX_TRACKED // 2)]:
                del buckets[name]

    @classmethod
    def _rate(cls, buckets: dict[str, Bucket], client: str, per_minute: int, what: str) -> str | None:
        if not per_minute:
            return None
        cls._forget_some(buckets)
        bucket = buckets.setdefault(client, Bucket(per_minute / 60, per_minute))
        wait = bucket.take(1)
        if wait:
            return f"at most {per_minute} {what} a minute per client: try again in {math.ceil(wait)} s"
        return None


class AudioPace:
    """Audio a stream may send: ``pace`` times real time, after a first ``burst_s`` seconds at
    any speed (a client resending what a dropped connection lost). ``pace`` 0: no limit."""

    def __init__(self, pace: float, burst_s: float):
        self.bucket = Bucket(pace, burst_s) if pace > 0 else None

    def take(self, seconds: float) -> float:
        """0.0 when ``seconds`` of audio may be accepted now, else how long to wait."""
        return self.bucket.take(seconds) if self.bucket else 0.0
