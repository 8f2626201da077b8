"""Property-based fuzzing (hypothesis) of what a client controls: protocol messages and audio bytes.

Whatever arrives, parsing either gives a well-formed value or raises the one error type that is
answered with a stable code (ProtocolError, AudioError): never another exception (a 1011 or a
500 with a traceback). Small example counts keep this file to a few seconds.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iqrah.audio import AudioError, decode_audio
from iqrah.server import protocol as p

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
start_fields = st.fixed_dictionaries({}, optional={
    "protocol": st.sampled_from(["1.0", "1.2", "2.0", "", "1"]) | json_values,
    "surah": st.integers(-5, 120) | st.text(max_size=4) | json_values,
    "ayah": st.integers(-5, 300) | st.text(max_size=4) | json_values,
    "ayah_end": st.integers(-5, 300) | json_values,
    "words": st.text(max_size=8) | json_values,
    "sample_rate": st.sampled_from(p.SAMPLE_RATES) | json_values,
    "encoding": st.sampled_from(list(p.ENCODINGS)) | json_values,
    "session_id": st.text(max_size=80) | json_values,
    "resume_token": st.text(max_size=200) | json_values,
    "settings": st.dictionaries(st.sampled_from(sorted(p.SETTINGS) + ["x"]), st.integers(0, 8) | json_values,
                                max_size=3) | json_values,
})


@FAST
@given(st.text(max_size=200) | st.builds(json.dumps, json_values))
def test_any_text_message_parses_or_gets_a_protocol_error(raw):
    try:
        kind, data = p.parse_text(raw)
    except p.ProtocolError as exc:
        assert exc.code in (p.INVALID_JSON, p.UNKNOWN_TYPE) and not exc.fatal
        return
    assert kind in ("start", "audio", "stop", "pong") and isinstance(data, dict)


@FAST
@given(st.sampled_from(["start", "audio", "stop", "pong", "ping", ""]), json_values)
def test_messages_with_any_data_parse_or_get_a_protocol_error(kind, data):
    try:
        p.parse_text(json.dumps({"type": kind, "data": data}))
    except p.ProtocolError:
        pass


@FAST
@given(start_fields)
def test_any_start_gives_a_valid_start_or_a_protocol_error(data):
    try:
        start = p.parse_start(data)
    except p.ProtocolError as exc:
        assert exc.code in (p.UNSUPPORTED_PROTOCOL, p.UNKNOWN_AYAH, p.BAD_AUDIO_FORMAT, p.SESSION_NOT_FOUND,
                            p.BAD_SETTINGS)
        return
    assert isinstance(start.surah, int) and isinstance(start.ayah, int) and isinstance(start.spec, str)
    assert start.sample_rate in p.SAMPLE_RATES and start.encoding in p.ENCODINGS
    assert start.session_id is None or isinstance(start.session_id, str)
    assert start.resume_token is None or isinstance(start.resume_token, str)


@FAST
@given(st.binary(max_size=4096), st.sampled_from(list(p.ENCODINGS)))
def test_any_pcm_frame_decodes_to_full_scale_samples_or_a_protocol_error(payload, encoding):
    try:
        samples = p.decode_pcm(payload, encoding)
    except p.ProtocolError as exc:
        assert exc.code == p.BAD_AUDIO
        return
    assert samples.dtype == np.float32 and np.all(np.isfinite(samples)) and np.all(np.abs(samples) <= 1.0)


@FAST
@given(st.dictionaries(st.sampled_from(["data", "seq"]), json_values | st.binary(max_size=64).map(
    lambda b: base64.b64encode(b).decode())))
def test_any_audio_message_gives_bytes_or_a_protocol_error(data):
    try:
        assert isinstance(p.decode_audio_message(data), bytes)
    except p.ProtocolError as exc:
        assert exc.code == p.BAD_AUDIO


def _recording(fmt: str) -> bytes:
    t = np.arange(8000) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), 16000, format=fmt)
    return buffer.getvalue()


RECORDINGS = {fmt: _recording(fmt) for fmt in ("WAV", "FLAC", "OGG")}


def _check_decoded(data: bytes) -> None:
    try:
        audio = decode_audio(data)
    except AudioError:
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.all(np.isfinite(audio)) and float(np.max(np.abs(audio))) <= 1.0 + 1e-6


@SLOW
@given(st.binary(max_size=2048))
def test_any_bytes_decode_to_audio_or_an_audio_error(data):
    _check_decoded(data)


@SLOW
@given(st.sampled_from(sorted(RECORDINGS)), st.integers(0, 20_000),
       st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=8))
def test_damaged_recordings_decode_or_get_an_audio_error(fmt, cut, flips):
    """Real files cut short and with bytes changed (headers included): audio or AudioError."""
    data = bytearray(RECORDINGS[fmt][:cut])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    _check_decoded(bytes(data))
