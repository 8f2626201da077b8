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
    """Stored audio: the inverse of ``protocol.decode_pcm`` (x 32768, rounded), so pcm_s16le from a
    client is stored exactly and a resumed stream hears what an uninterrupted one heard."""
    return np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class SessionTaken(Exception):
    """Another connection resumed the session: this one is no longer its owner."""


class SessionStore(ABC):
    """Every write names its ``owner`` (one connection): a write of another owner than the one
    the store holds raises SessionTaken, so a connection that lost its session to a client that
    resumed it elsewhere can no longer change it (one live owner at a time)."""

    @abstractmethod
    def save(self, session_id: str, meta: dict, new_audio: bytes = b"", stored: int = 0, owner: str = "") -> bool:
        """Store ``meta`` and append ``new_audio`` (PCM16 bytes) to the session's audio, if the
        store holds exactly ``stored`` bytes of it; else write nothing and return False (the
        store lost audio, e.g. Redis restarted: the caller saves the whole with ``save_all``)."""

    @abstractmethod
    def save_all(self, session_id: str, meta: dict, audio: bytes, owner: str = "") -> None:
        """Store ``meta`` and the session's whole audio in place of what the store holds."""

    @abstractmethod
    def claim(self, session_id: str, owner: str) -> None:
        """Make ``owner`` the session's owner (a client resumed it with its resume token)."""

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
        self._owners: dict[str, str] = {}
        self._connections = 0
        self._lock = threading.Lock()
        self.ttl_s = ttl_s

    def save(self, session_id, meta, new_audio=b"", stored=0, owner=""):
        with self._lock:
            self._expire()
            self._check_owner(session_id, owner)
            _, audio, _ = self._sessions.get(session_id, ({}, bytearray(), 0.0))
            if len(audio) != stored:
                return False
            audio.extend(new_audio)
            self._sessions[session_id] = (dict(meta), audio, time.monotonic())
            self._owners[session_id] = owner
            return True

    def save_all(self, session_id, meta, audio, owner=""):
        with self._lock:
            self._check_owner(session_id, owner)
            self._sessions[session_id] = (dict(meta), bytearray(audio), time.monotonic())
            self._owners[session_id] = owner

    def claim(self, session_id, owner):
        with self._lock:
            self._owners[session_id] = owner

    def _check_owner(self, session_id, owner):
        if self._owners.get(session_id, owner) != owner:
            raise SessionTaken(session_id)

    def load(self, session_id):
        with self._lock:
            self._expire()
            found = self._sessions.get(session_id)
            return (dict(found[0]), bytes(found[1])) if found else None

    def delete(self, session_id):
        with self._lock:
            self._sessions.pop(session_id, None)
            self._owners.pop(session_id, None)

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
            self._owners.pop(sid, None)


class RedisSessionStore(SessionStore):
    """Sessions in Redis: ``iqrah:session:<id>`` (JSON meta), ``iqrah:audio:<id>`` (PCM16) and
    ``iqrah:owner:<id>`` (the connection that may write it), expiring ``ttl_s`` after the last
    write; open connections in ``iqrah:connections``."""

    CONNECTIONS = "iqrah:connections"

    def __init__(self, url: str, ttl_s: int = SESSION_TTL_S):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.ttl_s = int(ttl_s)
        self._append = self.client.register_script(self._APPEND)
        self._replace = self.client.register_script(self._REPLACE)

    #: KEYS: meta, audio, owner; ARGV: meta JSON, ttl, bytes stored, new audio, owner. One step in
    #: Redis, so no other write comes between the checks (owner, length) and the append.
    _APPEND = """
    local owner = redis.call('GET', KEYS[3])
    if owner and owner ~= ARGV[5] then return -1 end
    if redis.call('STRLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return 0 end
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    if #ARGV[4] > 0 then redis.call('APPEND', KEYS[2], ARGV[4]) end
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[2])
    return 1
    """
    #: KEYS: meta, audio, owner; ARGV: meta JSON, ttl, all audio, owner
    _REPLACE = """
    local owner = redis.call('GET', KEYS[3])
    if owner and owner ~= ARGV[4] then return -1 end
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[2])
    return 1
    """

    @staticmethod
    def _keys(session_id):
        return [f"iqrah:session:{session_id}", f"iqrah:audio:{session_id}", f"iqrah:owner:{session_id}"]

    def save(self, session_id, meta, new_audio=b"", stored=0, owner=""):
        done = int(self._append(keys=self._keys(session_id), args=[json.dumps(meta), self.ttl_s, stored,
                                                                     new_audio, owner]))
        if done < 0:
            raise SessionTaken(session_id)
        return bool(done)

    def save_all(self, session_id, meta, audio, owner=""):
        if int(self._replace(keys=self._keys(session_id), args=[json.dumps(meta), self.ttl_s, audio, owner])) < 0:
            raise SessionTaken(session_id)

    def claim(self, session_id, owner):
        self.client.set(f"iqrah:owner:{session_id}", owner, ex=self.ttl_s)

    def load(self, session_id):
        meta, audio = self.client.mget(f"iqrah:session:{session_id}", f"iqrah:audio:{session_id}")
        if meta is None:
            return None
        return json.loads(meta), audio or b""

    def delete(self, session_id):
        self.client.delete(*self._keys(session_id))

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
