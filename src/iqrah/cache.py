"""The reference cache: what is computed once per ayah (the text reference, a reciter's
features) kept for every process and server to read back in about a millisecond.

Keys are ``{model_version}:{reciter}:{surah}:{ayah}`` (``reciter`` is ``text`` plus a hash of
the recitation settings for a text reference), so a new model version never reads the entries
of an old one. Values are MessagePack, zlib-compressed. Two stores behind one interface:

* ``SQLiteCache``: embedded, the default, one file under the user's data folder
  (``$XDG_DATA_HOME/iqrah/cache.sqlite3``, or ``~/.local/share/...``); nothing to run.
* ``RedisCache``: shared by every server; a single node (``redis://host:6379/0``) or a
  Cluster (``redis-cluster://host:7000``). Entries expire after 30 days; run Redis with
  ``maxmemory-policy allkeys-lru`` so that it evicts the least used first when full.

``open_cache(url)`` picks one by its address (``sqlite:///path``, ``redis://...``,
``redis-cluster://...``, ``none``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

TTL_S = 30 * 24 * 3600


def cache_key(model_version: str, reciter: str, surah: int, ayah: int | str) -> str:
    return f"{model_version}:{reciter}:{surah}:{ayah}"


def pack(value: Any) -> bytes:
    return zlib.compress(msgpack.packb(value, use_bin_type=True), 6)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(zlib.decompress(data), raw=False, strict_map_key=False)


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "iqrah" / "cache.sqlite3"


class Cache:
    """get/put of packed values by key; counts hits, misses and the time a get takes."""

    kind = "none"

    def __init__(self):
        self.hits = self.misses = 0
        #: told (hit, seconds) after every get, e.g. Prometheus counters and a histogram
        self.on_get: Callable[[bool, float], None] | None = None

    def get(self, key: str) -> Any | None:
        start = time.perf_counter()
        data = self._get(key)
        value = unpack(data) if data is not None else None
        hit = value is not None
        self.hits += hit
        self.misses += not hit
        if self.on_get:
            self.on_get(hit, time.perf_counter() - start)
        return value

    def put(self, key: str, value: Any) -> None:
        self._put(key, pack(value))

    def get_or_build(self, key: str, build: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = build()
            self.put(key, value)
        return value

    def _get(self, key: str) -> bytes | None:
        return None

    def _put(self, key: str, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class SQLiteCache(Cache):
    kind = "sqlite"

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # one connection per thread (sqlite3's rule)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value BLOB NOT NULL, "
                       "created REAL NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _get(self, key: str) -> bytes | None:
        row = self._db().execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _put(self, key: str, data: bytes) -> None:
        self._db().execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (key, data, time.time()))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class RedisCache(Cache):
    kind = "redis"

    def __init__(self, url: str, ttl_s: int = TTL_S, prefix: str = "iqrah:cache:"):
        super().__init__()
        import redis

        if url.startswith("redis-cluster://"):
            from redis.cluster import RedisCluster

            self.client = RedisCluster.from_url("redis://" + url.removeprefix("redis-cluster://"))
            self.kind = "redis-cluster"
        else:
            self.client = redis.Redis.from_url(url, socket_timeout=2.0)
        self.ttl_s, self.prefix = ttl_s, prefix

    def _get(self, key: str) -> bytes | None:
        return self.client.get(self.prefix + key)

    def _put(self, key: str, data: bytes) -> None:
        self.client.set(self.prefix + key, data, ex=self.ttl_s)

    def close(self) -> None:
        self.client.close()


def open_cache(url: str | None = None) -> Cache:
    """``None`` or ``sqlite://`` (the default file), ``sqlite:///path/file.sqlite3``,
    ``redis://host:port/db``, ``redis-cluster://host:port``, or ``none`` (no cache)."""
    url = url if url is not None else os.environ.get("IQRAH_CACHE", "")
    if url in ("", "sqlite://"):
        return SQLiteCache()
    if url == "none":
        return Cache()
    if url.startswith("sqlite:///"):
        return SQLiteCache(url.removeprefix("sqlite://"))
    if url.startswith(("redis://", "rediss://", "unix://", "redis-cluster://")):
        return RedisCache(url)
    raise ValueError(f"unknown cache address {url!r}: use sqlite:///path, redis://host:port/db, "
                     "redis-cluster://host:port or none")


def settings_tag(settings) -> str:
    """A short stable name of recitation settings, for the ``reciter`` part of a text key."""
    return "text-" + hashlib.sha1(repr(sorted(settings.to_dict().items())).encode()).hexdigest()[:10]
