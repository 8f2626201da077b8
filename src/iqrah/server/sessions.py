"""Where stream sessions live between connections: in memory, or in Redis to share servers.

A session is its metadata (what is recited, the words confirmed so far, where the stream
stands) and the audio received so far (16-bit PCM at 16 kHz). With the audio kept, a client
that reconnects, to this server or another behind the same Redis, sends only what the server
has not got (``resumed_from``), and the final report is that of the whole recitation.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod

import numpy as np

SESSION_TTL_S = 15 * 60  # a session can be resumed for this long after its last activity


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767


class SessionStore(ABC):
    @abstractmethod
    def save(self, session_id: str, meta: dict, new_audio: bytes = b"", stored: int = 0) -> bool:
        """Store ``meta`` and append ``new_audio`` (PCM16 bytes) to the session's audio, if the
        store holds exactly ``stored`` bytes of it; else write nothing and return False (the
        store lost audio, e.g. Redis restarted: the caller saves the whole with ``save_all``)."""

    @abstractmethod
    def save_all(self, session_id: str, meta: dict, audio: bytes) -> None:
        """Store ``meta`` and the session's whole audio in place of what the store holds."""

    @abstractmethod
    def load(self, session_id: str) -> tuple[dict, bytes] | None:
        """(meta, all audio) of a live session, or None."""

    @abstractmethod
    def delete(self, session_id: str) -> None: ...

    @abstractmethod
    def connection_opened(self) -> int:
        """Count a connection; returns the number open across servers sharing the store."""

    @abstractmethod
    def connection_closed(self) -> int: ...

    def ping(self) -> None:  # noqa: B027 - a store in this process is always reachable
        """Raise if the store cannot be reached."""


class MemorySessionStore(SessionStore):
    def __init__(self, ttl_s: float = SESSION_TTL_S):
        self._sessions: dict[str, tuple[dict, bytearray, float]] = {}
        self._connections = 0
        self._lock = threading.Lock()
        self.ttl_s = ttl_s

    def save(self, session_id, meta, new_audio=b"", stored=0):
        with self._lock:
            self._expire()
            _, audio, _ = self._sessions.get(session_id, ({}, bytearray(), 0.0))
            if len(audio) != stored:
                return False
            audio.extend(new_audio)
            self._sessions[session_id] = (dict(meta), audio, time.monotonic())
            return True

    def save_all(self, session_id, meta, audio):
        with self._lock:
            self._sessions[session_id] = (dict(meta), bytearray(audio), time.monotonic())

    def load(self, session_id):
        with self._lock:
            self._expire()
            found = self._sessions.get(session_id)
            return (dict(found[0]), bytes(found[1])) if found else None

    def delete(self, session_id):
        with self._lock:
            self._sessions.pop(session_id, None)

    def connection_opened(self):
        with self._lock:
            self._connections += 1
            return self._connections

    def connection_closed(self):
        with self._lock:
            self._connections = max(0, self._connections - 1)
            return self._connections

    def _expire(self):
        now = time.monotonic()
        for sid in [s for s, (_, _, t) in self._sessions.items() if now - t > self.ttl_s]:
            del self._sessions[sid]


class RedisSessionStore(SessionStore):
    """Sessions in Redis: ``iqrah:session:<id>`` (JSON meta) and ``iqrah:audio:<id>`` (PCM16),
    both expiring ``ttl_s`` after the last write; open connections in ``iqrah:connections``."""

    CONNECTIONS = "iqrah:connections"

    def __init__(self, url: str, ttl_s: int = SESSION_TTL_S):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.ttl_s = int(ttl_s)
        self._append = self.client.register_script(self._APPEND)

    #: KEYS: meta, audio; ARGV: meta JSON, ttl, bytes stored, new audio. One step in Redis, so no
    #: other write comes between the length check and the append.
    _APPEND = """
    if redis.call('STRLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return 0 end
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    if #ARGV[4] > 0 then redis.call('APPEND', KEYS[2], ARGV[4]) end
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    return 1
    """

    def save(self, session_id, meta, new_audio=b"", stored=0):
        keys = [f"iqrah:session:{session_id}", f"iqrah:audio:{session_id}"]
        return bool(self._append(keys=keys, args=[json.dumps(meta), self.ttl_s, stored, new_audio]))

    def save_all(self, session_id, meta, audio):
        pipe = self.client.pipeline()
        pipe.set(f"iqrah:session:{session_id}", json.dumps(meta), ex=self.ttl_s)
        pipe.set(f"iqrah:audio:{session_id}", audio, ex=self.ttl_s)
        pipe.execute()

    def load(self, session_id):
        meta, audio = self.client.mget(f"iqrah:session:{session_id}", f"iqrah:audio:{session_id}")
        if meta is None:
            return None
        return json.loads(meta), audio or b""

    def delete(self, session_id):
        self.client.delete(f"iqrah:session:{session_id}", f"iqrah:audio:{session_id}")

    def connection_opened(self):
        return int(self.client.incr(self.CONNECTIONS))

    def connection_closed(self):
        value = int(self.client.decr(self.CONNECTIONS))
        if value < 0:
            self.client.set(self.CONNECTIONS, 0)
        return max(value, 0)

    def ping(self):
        self.client.ping()


def make_store(redis_url: str | None) -> SessionStore:
    return RedisSessionStore(redis_url) if redis_url else MemorySessionStore()
