"""Protocol 1.0 parsing, sans I/O."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from iqrah.server import protocol as p


def test_messages_have_type_data_timestamp():
    msg = json.loads(p.message("ready", {"session_id": "x"}))
    assert set(msg) == {"type", "data", "timestamp"} and msg["data"]["session_id"] == "x"
    err = json.loads(p.error(p.UNKNOWN_AYAH, "no ayah 1:8", resumable=False))
    assert err["data"] == {"code": "unknown_ayah", "message": "no ayah 1:8", "resumable": False}


@pytest.mark.parametrize("raw,code", [
    ("not json", p.INVALID_JSON), ("[1, 2]", p.INVALID_JSON), ('{"data": {}}', p.INVALID_JSON),
    ('{"type": "start", "data": 5}', p.INVALID_JSON), ('{"type": "hello"}', p.UNKNOWN_TYPE),
    ("[" * 100_000 + "]" * 100_000, p.INVALID_JSON),  # deeper than Python's parser goes
])
def test_bad_text_messages(raw, code):
    with pytest.raises(p.ProtocolError) as exc:
        p.parse_text(raw)
    assert exc.value.code == code and not exc.value.fatal


def test_start_is_validated():
    start = p.parse_start({"protocol": "1.0", "surah": 2, "ayah": 255, "ayah_end": 257,
                           "sample_rate": 48000, "encoding": "f32le"})
    assert start.spec == "2:255-257" and start.sample_rate == 48000
    assert p.parse_start({"protocol": "1.2", "surah": 1, "ayah": 2, "sample_rate": 16000}).encoding == "pcm_s16le"
    with pytest.raises(p.ProtocolError) as exc:
        p.parse_start({"protocol": "2.0", "surah": 1, "ayah": 1, "sample_rate": 16000})
    assert exc.value.code == p.UNSUPPORTED_PROTOCOL and exc.value.fatal
    for bad, code in [({"surah": "x"}, p.UNKNOWN_AYAH), ({"sample_rate": 11025}, p.BAD_AUDIO_FORMAT),
                      ({"encoding": "opus"}, p.BAD_AUDIO_FORMAT), ({"session_id": 5}, p.SESSION_NOT_FOUND),
                      ({"settings": {"madd_aared": "long"}}, p.BAD_SETTINGS), ({"surah": True}, p.UNKNOWN_AYAH),
                      ({"ayah": 1.5}, p.UNKNOWN_AYAH), ({"ayah_end": [3]}, p.UNKNOWN_AYAH),
                      ({"encoding": []}, p.BAD_AUDIO_FORMAT),  # found by tests/test_fuzz.py (was a TypeError)
                      ({"resume_token": 7}, p.SESSION_NOT_FOUND)]:
        data = {"protocol": "1.0", "surah": 1, "ayah": 1, "sample_rate": 16000, **bad}
        with pytest.raises(p.ProtocolError) as exc:
            p.parse_start(data)
        assert exc.value.code == code


def test_pcm_decoding():
    ints = np.array([0, 16384, -32768], "<i2")
    assert np.allclose(p.decode_pcm(ints.tobytes(), "pcm_s16le"), [0, 0.5, -1])
    floats = np.array([0.25, -0.5], "<f4")
    assert np.allclose(p.decode_pcm(floats.tobytes(), "f32le"), floats)
    loud = np.array([1e30, -3.0, 0.5], "<f4")  # finite but far beyond full scale: clipped
    assert np.array_equal(p.decode_pcm(loud.tobytes(), "f32le"), np.array([1.0, -1.0, 0.5], np.float32))
    with pytest.raises(p.ProtocolError, match="whole"):
        p.decode_pcm(b"\x00\x01\x02", "pcm_s16le")
    with pytest.raises(p.ProtocolError, match="NaN"):
        p.decode_pcm(np.array([np.inf], "<f4").tobytes(), "f32le")
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_pcm(b"\x00" * (p.MAX_FRAME_BYTES + 2), "pcm_s16le")
    assert exc.value.code == p.FRAME_TOO_LARGE
    assert p.decode_audio_message({"data": base64.b64encode(b"\x01\x02").decode()}) == b"\x01\x02"
    with pytest.raises(p.ProtocolError):
        p.decode_audio_message({"data": "***"})


def test_connection_rules_without_a_socket():
    """protocol.Connection: what a client may send in which state, with no I/O at all."""
    import base64

    conn = p.Connection()
    start = json.dumps({"type": "start", "data": {"protocol": "1.0", "surah": 1, "ayah": 2, "sample_rate": 16000,
                                                  "api_key": "k", "reciter": "Husary"}})
    for raw, code in ((json.dumps({"type": "stop"}), p.NOT_STARTED),
                      (json.dumps({"type": "audio", "data": {"data": "AAA="}}), p.NOT_STARTED)):
        with pytest.raises(p.ProtocolError) as err:
            conn.receive_text(raw)
        assert err.value.code == code
    with pytest.raises(p.ProtocolError) as err:
        conn.receive_bytes(b"\x00\x00")
    assert err.value.code == p.NOT_STARTED
    assert conn.receive_text(json.dumps({"type": "pong"})) == ("pong", None)
    kind, value = conn.receive_text(start)
    assert kind == "start" and value.spec == "1:2" and value.api_key == "k" and value.reciter == "Husary"
    assert conn.state == p.Connection.IDLE  # the handler says when the stream has really started
    conn.started(value)
    with pytest.raises(p.ProtocolError) as err:
        conn.receive_text(start)
    assert err.value.code == p.ALREADY_STARTED
    pcm = b"\x01\x00\x02\x00"
    assert conn.receive_bytes(pcm) == pcm
    audio = json.dumps({"type": "audio", "data": {"seq": 0, "data": base64.b64encode(pcm).decode()}})
    assert conn.receive_text(audio) == ("audio", pcm)
    assert conn.receive_text(json.dumps({"type": "stop"})) == ("stop", None)
    conn.stopped()
    assert conn.state == p.Connection.IDLE and conn.start is None
    assert conn.receive_text(start)[0] == "start"  # a new stream on the same connection
