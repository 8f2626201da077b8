"""The limits and choices of one server process.

Every field has an ``IQRAH_*`` environment variable (read when a ServerConfig is made), so that
``uvicorn --workers N`` processes share them; ``0`` turns a limit off where that makes sense.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (os.environ.get(name) or "").split(",") if item.strip())


def _env(name: str, default):
    """A field whose default is read from the environment variable ``name``."""
    read = {int: _env_int, float: _env_float}[type(default)]
    return field(default_factory=lambda: read(name, default))


@dataclass(frozen=True)
class ServerConfig:
    """What one server process runs and the limits it keeps (docs/protocol.md, Limits)."""

    model: str | None = field(default_factory=lambda: os.environ.get("IQRAH_MODEL") or None)
    # the model of live verdicts (None: the bundled live model beside the bundled default, else
    # ``model``); ``model`` hears uploads and the final report of a stream
    live_model: str | None = field(default_factory=lambda: os.environ.get("IQRAH_LIVE_MODEL") or None)
    redis_url: str | None = field(default_factory=lambda: os.environ.get("IQRAH_REDIS_URL") or None)
    # the reference cache (iqrah.cache.open_cache: sqlite:///file, redis://..., redis-cluster://...,
    # none); empty: the SQLite file under the user's data folder
    cache: str = field(default_factory=lambda: os.environ.get("IQRAH_CACHE") or "")
    # reference reciters' recordings served at /audio/{reciter}/{surah}/{ayah}: <folder>/<reciter>/SSSAAA.mp3
    audio_dir: str | None = field(default_factory=lambda: os.environ.get("IQRAH_AUDIO_DIR") or None)

    # ---- streams ----
    max_connections: int = _env("IQRAH_MAX_CONNECTIONS", 100)  # started streams; the next gets 1013
    max_pending: int = _env("IQRAH_MAX_PENDING", 100)  # waiting to start; past it the oldest is closed
    start_timeout_s: float = _env("IQRAH_START_TIMEOUT", 10.0)  # to send start after connecting
    idle_timeout_s: float = _env("IQRAH_IDLE_TIMEOUT", 60.0)  # a started stream with no audio: closed
    audio_pace: float = _env("IQRAH_AUDIO_PACE", 2.0)  # audio accepted at most this x real time ...
    audio_burst_s: float = _env("IQRAH_AUDIO_BURST", 30.0)  # ... beyond this many seconds at once
    max_session_bytes: int = 50 * 2**20
    ping_interval_s: float = 10.0

    # ---- uploads and HTTP ----
    max_upload_bytes: int = 25 * 2**20
    header_timeout_s: float = _env("IQRAH_HEADER_TIMEOUT", 10.0)  # request line and headers
    body_timeout_s: float = _env("IQRAH_BODY_TIMEOUT", 30.0)  # the longest pause inside a body
    keep_alive_s: int = _env("IQRAH_KEEP_ALIVE", 5)  # an idle HTTP connection between requests

    # ---- work ----
    inference_threads: int = _env("IQRAH_INFERENCE_THREADS", os.cpu_count() or 2)  # model calls at once: one per core
    report_threads: int = _env("IQRAH_REPORT_THREADS", 2)  # streams' final reports at once
    upload_threads: int = _env("IQRAH_UPLOAD_THREADS", 1)  # uploads analysed at once (at low priority)

    # ---- access ----
    api_keys: tuple[str, ...] = field(default_factory=lambda: _env_list("IQRAH_API_KEYS"))
    # origins (scheme://host[:port]) whose pages may use the server; same-origin always may
    allowed_origins: tuple[str, ...] = field(default_factory=lambda: _env_list("IQRAH_ALLOWED_ORIGINS"))
    # per client (its API key, else its IP address)
    client_connections: int = _env("IQRAH_CLIENT_CONNECTIONS", 20)  # open at once
    client_connects_per_minute: int = _env("IQRAH_CLIENT_CONNECTS_PER_MINUTE", 120)
    client_uploads_per_minute: int = _env("IQRAH_CLIENT_UPLOADS_PER_MINUTE", 30)
    client_audio_per_minute: int = _env("IQRAH_CLIENT_AUDIO_PER_MINUTE", 1200)  # seconds, all its streams
