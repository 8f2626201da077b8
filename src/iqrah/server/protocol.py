"""Protocol 1.0 of ``/ws/stream``, sans I/O: parse client messages, build server messages.

Every message is JSON ``{"type", "data", "timestamp"}``; audio may also come as binary frames of
raw PCM. Errors carry a stable ``code`` (below) that clients can switch on; ``fatal`` errors end
the connection, the others leave it open. See docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass

import numpy as np

PROTOCOL_VERSION = "1.0"
MAX_FRAME_BYTES = 1 << 20  # 1 MB
ENCODINGS = {"pcm_s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

# stable error codes: (code, fatal)
INVALID_JSON = "invalid_json"
UNKNOWN_TYPE = "unknown_type"
NOT_STARTED = "not_started"
ALREADY_STARTED = "already_started"
UNSUPPORTED_PROTOCOL = "unsupported_protocol"
UNKNOWN_AYAH = "unknown_ayah"
BAD_AUDIO_FORMAT = "bad_audio_format"
FRAME_TOO_LARGE = "frame_too_large"
BAD_AUDIO = "bad_audio"
NO_SPEECH = "no_speech"
SESSION_TOO_LARGE = "session_too_large"
SESSION_NOT_FOUND = "session_not_found"
STORE_UNAVAILABLE = "store_unavailable"
SERVER_BUSY = "server_busy"
SHUTTING_DOWN = "shutting_down"
TIMEOUT = "timeout"
INTERNAL = "internal_error"
BAD_SETTINGS = "bad_settings"
TOO_FAST = "too_fast"
IDLE_TIMEOUT = "idle_timeout"
UNAUTHORIZED = "unauthorized"
RATE_LIMITED = "rate_limited"
SESSION_TAKEN = "session_taken_over"
UNKNOWN_RECITER = "unknown_reciter"

SETTINGS = {"madd_monfasel", "madd_mottasel", "madd_aared"}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, *, fatal: bool = False, **extra):
        super().__init__(message)
        self.code, self.message, self.fatal, self.extra = code, message, fatal, extra


@dataclass(frozen=True)
class Start:
    surah: int
    ayah: int
    ayah_end: int | None
    sample_rate: int
    encoding: str
    session_id: str | None
    words: str | None = None  # optional word span "3-7" inside one ayah
    settings: dict | None = None  # madd lengths: madd_monfasel, madd_mottasel, madd_aared
    resume_token: str | None = None  # with session_id: the secret its ready message gave
    reciter: str | None = None  # a reference reciter to compare tempo, rhythm and melody with
    api_key: str | None = None  # when the handshake carried none and the server requires keys

    @property
    def spec(self) -> str:
        if self.words:
            return f"{self.surah}:{self.ayah}:{self.words}"
        if self.ayah_end and self.ayah_end != self.ayah:
            return f"{self.surah}:{self.ayah}-{self.ayah_end}"
        return f"{self.surah}:{self.ayah}"


def message(type_: str, data: dict | None = None) -> str:
    return json.dumps({"type": type_, "data": data or {}, "timestamp": time.time()}, ensure_ascii=False)


def error(code: str, text: str, **extra) -> str:
    return message("error", {"code": code, "message": text, **extra})


def parse_text(raw: str) -> tuple[str, dict]:
    """(type, data) of a client JSON message; ProtocolError if it is not one."""
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(INVALID_JSON, f"message is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ProtocolError(INVALID_JSON, "message is nested too deeply") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(INVALID_JSON, 'a message must be an object with a string "type"')
    data = msg.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_JSON, '"data" must be an object')
    if msg["type"] not in ("start", "audio", "stop", "pong"):
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {msg['type']!r}: use start, audio, stop or pong")
    return msg["type"], data


def parse_start(data: dict) -> Start:
    version = str(data.get("protocol", ""))
    if version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
        raise ProtocolError(UNSUPPORTED_PROTOCOL, f"protocol {version or '(none)'} is not supported: "
                            f"this server speaks {PROTOCOL_VERSION}", fatal=True)
    try:
        surah, ayah = _integer(data["surah"]), _integer(data["ayah"])
        ayah_end = _integer(data["ayah_end"]) if data.get("ayah_end") is not None else None
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(UNKNOWN_AYAH, "start needs integer surah and ayah (and optional ayah_end)") from None
    rate = data.get("sample_rate")
    if rate not in SAMPLE_RATES:
        raise ProtocolError(BAD_AUDIO_FORMAT, f"sample_rate {rate!r} is not supported: use one of "
                            f"{', '.join(map(str, SAMPLE_RATES))}")
    encoding = data.get("encoding", "pcm_s16le")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise ProtocolError(BAD_AUDIO_FORMAT, f"encoding {encoding!r} is not supported: use pcm_s16le or f32le")
    session_id = data.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not 0 < len(session_id) <= 64):
        raise ProtocolError(SESSION_NOT_FOUND, "session_id must be the string a ready message gave")
    resume_token = data.get("resume_token")
    if resume_token is not None and (not isinstance(resume_token, str) or not 0 < len(resume_token) <= 128):
        raise ProtocolError(SESSION_NOT_FOUND, "resume_token must be the string a ready message gave")
    words = data.get("words")
    settings = data.get("settings")
    if settings is not None and (not isinstance(settings, dict) or not set(settings) <= SETTINGS
                                 or not all(isinstance(v, int) for v in settings.values())):
        raise ProtocolError(BAD_SETTINGS, f"settings may hold integer {', '.join(sorted(SETTINGS))}")
    reciter = data.get("reciter")
    if reciter is not None and (not isinstance(reciter, str) or not 0 < len(reciter) <= 100):
        raise ProtocolError(UNKNOWN_RECITER, "reciter must be a reference reciter's name")
    api_key = data.get("api_key")
    return Start(surah, ayah, ayah_end, int(rate), encoding, session_id, str(words) if words else None,
                 settings or None, resume_token, reciter or None, api_key if isinstance(api_key, str) else None)


def _integer(value) -> int:
    """A whole number as JSON gives it (5 or "5"); not true, 5.5 or "five"."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"not an integer: {value!r}")
    return int(value)


def decode_pcm(payload: bytes, encoding: str) -> np.ndarray:
    """Raw PCM bytes -> float32 samples in [-1, 1]."""
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(FRAME_TOO_LARGE, f"audio frame of {len(payload)} bytes: the limit is {MAX_FRAME_BYTES}")
    dtype = ENCODINGS[encoding]
    if len(payload) % dtype.itemsize:
        raise ProtocolError(BAD_AUDIO, f"{encoding} frames must hold whole {dtype.itemsize}-byte samples")
    samples = np.frombuffer(payload, dtype=dtype)
    if encoding == "pcm_s16le":
        return samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32)
    if not np.all(np.isfinite(samples)):
        raise ProtocolError(BAD_AUDIO, "audio contains NaN or infinite samples")
    return np.clip(samples, -1.0, 1.0)  # full scale, as a sound card would clip it


def decode_audio_message(data: dict) -> bytes:
    try:
        payload = base64.b64decode(data["data"], validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise ProtocolError(BAD_AUDIO, 'an audio message needs base64 PCM in "data"') from None
    return payload


class Connection:
    """The protocol's rules for one connection, sans I/O (in the manner of h11's ``Connection``):
    what a client may send in which state, parsed into typed values. The async handler
    (``ws.py``) gives it what arrives and tells it when a stream starts and stops; it holds no
    socket, so every rule is tested without one."""

    IDLE, STREAMING = "idle", "streaming"

    def __init__(self):
        self.state = self.IDLE
        self.start: Start | None = None  # the stream's start while streaming

    def receive_text(self, raw: str) -> tuple[str, Start | bytes | None]:
        """("start", Start), ("audio", PCM bytes), ("stop", None) or ("pong", None); ProtocolError
        for a malformed message or one the state does not allow (audio or stop before start, a
        second start before stop)."""
        kind, data = parse_text(raw)
        if kind == "start":
            start = parse_start(data)
            if self.state != self.IDLE:
                raise ProtocolError(ALREADY_STARTED, "this connection has started already; send stop first")
            return kind, start
        if kind == "audio":
            self._streaming("send start before audio")
            return kind, decode_audio_message(data)
        if kind == "stop":
            self._streaming("nothing to stop: send start first")
        return kind, None

    def receive_bytes(self, payload: bytes) -> bytes:
        """A binary frame: PCM in the start's encoding, only while streaming."""
        self._streaming("send start before audio")
        return payload

    def started(self, start: Start) -> None:
        self.state, self.start = self.STREAMING, start

    def stopped(self) -> None:
        """The stream ended (its final sent); a new start may follow on this connection."""
        self.state, self.start = self.IDLE, None

    def _streaming(self, hint: str) -> None:
        if self.state != self.STREAMING:
            raise ProtocolError(NOT_STARTED, hint)
