"""The server through its real protocol: WebSocket streams, uploads, health, metrics, limits,
resuming on another server through a real Redis, and bad input beside a healthy stream."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from iqrah.acoustic.base import AcousticModel
from iqrah.server.app import ServerConfig, create_app
from iqrah.server.sessions import MemorySessionStore, RedisSessionStore

DEV = "dev/offline-tarteel-test-corpus-001002.opus"  # Alafasy, 1:2


@pytest.fixture(scope="module")
def model():
    from iqrah.acoustic.onnx_model import OnnxAcousticModel, bundled_model_path

    path = os.environ.get("IQRAH_TEST_MODEL") or bundled_model_path()
    if not os.path.isfile(path):
        pytest.skip("the bundled acoustic model is not in this checkout")
    return OnnxAcousticModel(path, threads=1)


@pytest.fixture(scope="module")
def pcm(speech) -> bytes:
    return (np.clip(speech, -1, 1) * 32767).astype("<i2").tobytes()


def start_msg(**data) -> str:
    base = {"protocol": "1.0", "surah": 1, "ayah": 2, "sample_rate": 16000, "encoding": "pcm_s16le"}
    return json.dumps({"type": "start", "data": {**base, **data}})


def receive(ws, until: str = "final", limit: int = 500) -> list[dict]:
    out = []
    for _ in range(limit):
        msg = json.loads(ws.receive_text())
        out.append(msg)
        if msg["type"] == until:
            return out
    raise AssertionError(f"no {until} message")


def send_audio(ws, pcm: bytes, chunk: int = 3200, real_time: bool = False) -> None:
    """Send PCM16 in 100 ms frames: as fast as possible, or at the pace of a live microphone."""
    for i in range(0, len(pcm), chunk):
        if real_time:
            time.sleep(chunk / 32000)
        ws.send_bytes(pcm[i:i + chunk])


@pytest.fixture
def client(model):
    with TestClient(create_app(ServerConfig(max_connections=4), model=model)) as c:
        yield c


def test_health_and_metrics(client):
    assert client.get("/health").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert "iqrah_stage_seconds" in text and "iqrah_active_connections" in text
    assert 'iqrah_build_info{live_model="iqrah-small' in text  # which models this replica runs
    assert "process_resident_memory_bytes" in text and "python_info" in text


def test_a_stream_hears_live_with_the_live_model_and_reports_with_the_other(model, pcm):
    """Two passes: the live model answers the stream's steps, the server's model the final report."""
    calls = {"live": [], "final": []}

    class Heard(AcousticModel):
        def __init__(self, role):
            self.role = role
            self.vocab, self.frame_seconds, self.card = model.vocab, model.frame_seconds, model.card

        def log_probs(self, audio):
            calls[self.role].append(np.asarray(audio).size)
            return model.log_probs(audio)

    with TestClient(create_app(model=Heard("final"), live_model=Heard("live"))) as c:
        health = c.get("/health").json()
        assert health["model"] == health["live_model"] == f"iqrah-small {model.card['version']}"
        with c.websocket_connect("/ws/stream") as ws:
            ws.send_text(start_msg())
            receive(ws, "ready")
            send_audio(ws, pcm)
            ws.send_text(json.dumps({"type": "stop"}))
            final = receive(ws)[-1]
    assert final["type"] == "final" and final["data"]["scores"]["content"] > 80
    assert calls["live"] and calls["final"] == [len(pcm) // 2]


def test_health_is_503_without_a_model(tmp_path):
    app = create_app(ServerConfig(model=str(tmp_path / "missing.onnx")))
    with TestClient(app) as c:
        response = c.get("/health")
        assert response.status_code == 503 and "model not loaded" in response.json()["reasons"][0]


def test_a_stream_gets_words_while_sending_and_the_report_at_the_end(client, pcm):
    with client.websocket_connect("/ws/stream") as ws:
        ws.send_text(start_msg())
        ready = json.loads(ws.receive_text())
        assert ready["type"] == "ready" and len(ready["data"]["words"]) == 4
        assert ready["data"]["session_id"]
        send_audio(ws, pcm, real_time=True)
        ws.send_text(json.dumps({"type": "stop"}))
        messages = receive(ws)
    types = [m["type"] for m in messages]
    # at least one partial per second of audio (the recording is 5.5 s)
    assert types.count("partial") >= 5 and types[-1] == "final"
    assert all("audio_ms" in m["data"] for m in messages)
    assert all(set(m) == {"type", "data", "timestamp"} for m in messages)
    final = messages[-1]["data"]
    assert final["spec"] == "1:2" and final["gate"]["path"] == "assessed"
    assert len(final["words"]) == 4


def test_the_server_runs_the_final_reports_windows_while_the_reciter_goes_on(model, recitations, monkeypatch):
    """A 12 s recitation: the final report's first 10 s window runs while the audio still comes
    (prepare_final, on the server's low-priority thread), and the report is the offline one."""
    from iqrah.analyze import analyze
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-002255.opus")[: 12 * 16000]
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    windows = []
    run_window = model.run_window
    monkeypatch.setattr(model, "run_window",
                        lambda window, memo: windows.append(window.size) or run_window(window, memo))
    with TestClient(create_app(ServerConfig(max_connections=4), model=model)) as client:
        with client.websocket_connect("/ws/stream") as ws:
            ws.send_text(start_msg(surah=2, ayah=255))
            assert json.loads(ws.receive_text())["type"] == "ready"
            send_audio(ws, pcm)
            for _ in range(100):  # the window runs beside the feeds, on a thread of its own
                if windows:
                    break
                time.sleep(0.05)
            ws.send_text(json.dumps({"type": "stop"}))
            final = receive(ws)[-1]["data"]
    assert windows == [10 * 16000]
    heard = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768  # the audio as the server has it
    offline = analyze(heard, "2:255", model=model).model_dump(mode="json")
    assert final == offline | {"timings_ms": final["timings_ms"], "audio_ms": final["audio_ms"]}


def test_upload_gives_the_same_report_as_the_stream(client, speech):
    buffer = io.BytesIO()
    sf.write(buffer, speech, 16000, format="WAV", subtype="PCM_16")
    response = client.post("/api/analyze", files={"file": ("r.wav", buffer.getvalue())}, data={"ayah": "1:2"})
    assert response.status_code == 200
    report = response.json()
    assert report["version"] == "1.0" and [w["number"] for w in report["words"]] == [1, 2, 3, 4]
    bad = client.post("/api/analyze", files={"file": ("r.wav", b"nope" * 100)}, data={"ayah": "1:2"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_audio"
    unknown = client.post("/api/analyze", files={"file": ("r.wav", buffer.getvalue())}, data={"ayah": "1:9"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_ayah"
    no_ayah = client.post("/api/analyze", files={"file": ("r.wav", buffer.getvalue())})  # one error shape
    assert no_ayah.status_code == 422 and no_ayah.json()["error"]["code"] == "bad_request"
    assert "ayah" in no_ayah.json()["error"]["message"]


def test_an_upload_stopped_mid_ayah_gets_its_report(client, recitations):
    """A recording cut off after two words: a report (words not reached are missing), not a 500."""
    cut = (recitations / DEV).read_bytes()[:13_312]
    response = client.post("/api/analyze", files={"file": ("r.opus", cut)}, data={"ayah": "1:2"})
    assert response.status_code == 200, response.text
    assert response.json()["words"][-1]["verdict"] == "missing"


def test_other_sample_rates_and_base64_audio(client, speech):
    import soxr

    audio_44k = soxr.resample(speech, 16000, 44100).astype("<f4")
    with client.websocket_connect("/ws/stream") as ws:
        ws.send_text(start_msg(sample_rate=44100, encoding="f32le"))
        assert json.loads(ws.receive_text())["type"] == "ready"
        raw = audio_44k.tobytes()
        for seq, i in enumerate(range(0, len(raw), 17640)):
            ws.send_text(json.dumps({"type": "audio", "data": {"seq": seq, "data": base64.b64encode(raw[i:i + 17640]).decode()}}))
        ws.send_text(json.dumps({"type": "stop"}))
        final = receive(ws)[-1]["data"]
    assert abs(final["duration_s"] - speech.size / 16000) < 0.05


@pytest.mark.parametrize("message,code", [
    ("{not json", "invalid_json"),
    (json.dumps({"type": "dance", "data": {}}), "unknown_type"),
    (json.dumps({"type": "stop"}), "not_started"),
    (start_msg(surah=115), "unknown_ayah"),
    (start_msg(ayah=8), "unknown_ayah"),
    (start_msg(sample_rate=12345), "bad_audio_format"),
    (start_msg(encoding="mp3"), "bad_audio_format"),
    (json.dumps({"type": "audio", "data": {"data": "!!!"}}), "not_started"),
])
def test_bad_messages_get_a_stable_error_and_the_connection_stays(client, message, code, pcm):
    with client.websocket_connect("/ws/stream") as ws:
        ws.send_text(message)
        reply = json.loads(ws.receive_text())
        assert reply["type"] == "error" and reply["data"]["code"] == code
        ws.send_text(start_msg())  # the connection still works
        assert json.loads(ws.receive_text())["type"] == "ready"


def test_bad_audio_beside_a_healthy_stream(client, pcm):
    with client.websocket_connect("/ws/stream") as good, client.websocket_connect("/ws/stream") as bad:
        good.send_text(start_msg())
        assert json.loads(good.receive_text())["type"] == "ready"
        bad.send_bytes(b"\x00" * 100)  # audio before start
        assert json.loads(bad.receive_text())["data"]["code"] == "not_started"
        bad.send_text(start_msg(encoding="f32le"))
        assert json.loads(bad.receive_text())["type"] == "ready"
        bad.send_bytes(np.array([np.nan] * 256, "<f4").tobytes())
        assert json.loads(bad.receive_text())["data"]["code"] == "bad_audio"
        bad.send_bytes(b"\x00" * (1 << 20 + 1))
        assert json.loads(bad.receive_text())["data"]["code"] == "frame_too_large"
        bad.send_text(json.dumps({"type": "start", "data": {"protocol": "2.0"}}))
        assert json.loads(bad.receive_text())["data"]["code"] == "unsupported_protocol"
        with pytest.raises(WebSocketDisconnect):
            bad.receive_text()
        send_audio(good, pcm)
        good.send_text(json.dumps({"type": "stop"}))
        assert receive(good)[-1]["data"]["gate"]["path"] == "assessed"


def test_connections_over_the_limit_are_refused_with_1013(model):
    with TestClient(create_app(ServerConfig(max_connections=1), model=model)) as c:
        with c.websocket_connect("/ws/stream") as first:
            first.send_text(start_msg())
            json.loads(first.receive_text())
            with c.websocket_connect("/ws/stream") as second:
                with pytest.raises(WebSocketDisconnect) as refused:
                    second.receive_text()
                assert refused.value.code == 1013 and "busy" in refused.value.reason


def stream_half_then_resume(app_a, app_b, pcm):
    half = len(pcm) // 2 // 3200 * 3200
    with TestClient(app_a) as a:
        with a.websocket_connect("/ws/stream") as ws:
            ws.send_text(start_msg())
            first = json.loads(ws.receive_text())["data"]
            send_audio(ws, pcm[:half])
            ws.send_text(json.dumps({"type": "dance"}))  # a round trip: everything before is handled
            assert receive(ws, until="error")[-1]["data"]["code"] == "unknown_type"
    with TestClient(app_b) as b:
        with b.websocket_connect("/ws/stream") as ws:
            ws.send_text(start_msg(session_id=first["session_id"], resume_token=first["resume_token"]))
            ready = json.loads(ws.receive_text())["data"]
            resumed_ms = ready["resumed_from"]["audio_ms"]
            send_audio(ws, pcm[resumed_ms * 32:])
            ws.send_text(json.dumps({"type": "stop"}))
            final = receive(ws)[-1]["data"]
    return ready, final


def test_a_client_resumes_after_reconnecting(model, pcm, speech):
    store = MemorySessionStore()
    ready, final = stream_half_then_resume(create_app(model=model, store=store),
                                           create_app(model=model, store=store), pcm)
    assert ready["resumed_from"]["audio_ms"] > 1000
    assert abs(final["duration_s"] - speech.size / 16000) < 0.05


def start_redis(folder, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A real redis-server on loopback that keeps nothing on disk (a restart loses everything)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        try:
            RedisSessionStore(url).ping()
            break
        except Exception:
            time.sleep(0.1)
    return proc, url


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(5)


def test_a_redis_restart_mid_stream_loses_no_audio_of_the_session(model, pcm, speech, tmp_path):
    """Redis restarts (empty) while a stream goes on: the next save finds the store without the
    audio saved before and saves all of it again, so a resume on another server gets the whole
    recitation and the final report of all of it."""
    proc, url = start_redis(tmp_path)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    third = len(pcm) // 3 // 3200 * 3200
    try:
        with TestClient(create_app(ServerConfig(redis_url=url), model=model)) as a:
            with a.websocket_connect("/ws/stream") as ws:
                ws.send_text(start_msg())
                first = json.loads(ws.receive_text())["data"]
                session = first["session_id"]
                send_audio(ws, pcm[:third])
                ws.send_text(json.dumps({"type": "dance"}))
                receive(ws, until="error")
                proc.terminate()
                proc.wait(5)
                proc, _ = start_redis(tmp_path, port)  # empty: everything stored so far is gone
                send_audio(ws, pcm[third : 2 * third])
                ws.send_text(json.dumps({"type": "dance"}))
                receive(ws, until="error")
        stored = RedisSessionStore(url).load(session)
        assert stored is not None and len(stored[1]) == 2 * stored[0]["analyzer"]["samples"] == 2 * third
        with TestClient(create_app(ServerConfig(redis_url=url), model=model)) as b:
            with b.websocket_connect("/ws/stream") as ws:
                ws.send_text(start_msg(session_id=session, resume_token=first["resume_token"]))
                ready = json.loads(ws.receive_text())["data"]
                send_audio(ws, pcm[ready["resumed_from"]["audio_ms"] * 32:])
                ws.send_text(json.dumps({"type": "stop"}))
                final = receive(ws)[-1]["data"]
        assert abs(final["duration_s"] - speech.size / 16000) < 0.05
        assert not final["content_errors"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_a_session_whose_store_lost_audio_is_not_resumed(model, pcm, redis_url):
    """Audio shorter than the session says (saved before the checked append existed, or cut):
    resuming it would judge another recitation, so the client is told to start again."""
    store = RedisSessionStore(redis_url)
    meta = {"spec": "1:2", "analyzer": {"spec": "1:2", "samples": 32000, "speech_from": 0, "next_word": 0,
                                        "words": {}}, "updated": time.time(),
            "token": hashlib.sha256(b"secret").hexdigest()}
    store.save_all("cut-session", meta, pcm[:16000])
    with TestClient(create_app(ServerConfig(redis_url=redis_url), model=model)) as c:
        with c.websocket_connect("/ws/stream") as ws:
            ws.send_text(start_msg(session_id="cut-session", resume_token="secret"))
            error = json.loads(ws.receive_text())
    assert error["type"] == "error" and error["data"]["code"] == "session_not_found"
    assert "lost part of its audio" in error["data"]["message"]


def test_resume_on_another_server_through_redis(model, pcm, speech, redis_url):
    app_a = create_app(ServerConfig(redis_url=redis_url), model=model)
    app_b = create_app(ServerConfig(redis_url=redis_url), model=model)
    ready, final = stream_half_then_resume(app_a, app_b, pcm)
    assert ready["resumed_from"]["audio_ms"] > 1000
    assert abs(final["duration_s"] - speech.size / 16000) < 0.05
    store = RedisSessionStore(redis_url)
    assert int(store.client.get(store.CONNECTIONS)) == 0  # every connection was counted out


def test_health_reports_an_unreachable_redis(model):
    """Streams go on without Redis (only resuming is lost): the server is alive (200), degraded."""
    with TestClient(create_app(ServerConfig(redis_url="redis://127.0.0.1:1/0"), model=model)) as c:
        response = c.get("/health")
        assert response.status_code == 200 and "redis" in response.json()["reasons"][0]
        assert response.json()["status"] == "degraded" and response.json()["store"] == "unreachable"


def test_with_redis_down_streams_end_cleanly_and_a_resume_is_told_why(model, pcm):
    """No Redis: a stream still gets its final report and stays open (was 1011 after the final),
    and a resume gets a clear error (was 1011)."""
    with TestClient(create_app(ServerConfig(redis_url="redis://127.0.0.1:1/0"), model=model)) as c:
        with c.websocket_connect("/ws/stream") as ws:
            ws.send_text(start_msg())
            receive(ws, "ready")
            send_audio(ws, pcm)
            ws.send_text(json.dumps({"type": "stop"}))
            assert receive(ws)[-1]["type"] == "final"
            ws.send_text(start_msg(session_id="a" * 32))
            error = receive(ws, until="error")[-1]["data"]
            assert error["code"] == "store_unavailable" and "without session_id" in error["message"]
            ws.send_text(start_msg())  # the connection is still open: a new recitation starts
            assert receive(ws, "ready")[-1]["type"] == "ready"


def test_draining_tells_clients_to_resume(client):
    with client.websocket_connect("/ws/stream") as ws:
        ws.send_text(start_msg())
        session = json.loads(ws.receive_text())["data"]["session_id"]
        client.portal.call(client.app.state.iqrah.draining.set)
        reply = json.loads(ws.receive_text())
        assert reply["data"]["code"] == "shutting_down" and reply["data"]["resumable"]
        assert reply["data"]["session_id"] == session


def test_page_and_its_data(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    weight = sum(len(client.get(f"/static/{name}").content) for name in ("app.js", "app.css", "pcm-worklet.js"))
    assert weight + len(page.content) < 1_000_000  # page weight without fonts
    surahs = client.get("/api/surahs").json()
    assert len(surahs) == 114 and surahs[0]["name_en"] == "Al-Fatihah" and surahs[1]["ayahs"] == 286
    ref = client.get("/api/reference/1:7?madd_aared=6").json()
    assert any(r["tag"] == "madd:aared" and r["harakat"] == 6 for u in ref["units"] for r in u["rules"])
    assert client.get("/api/reference/1:9").json()["error"]["code"] == "unknown_ayah"
    assert client.get("/api/reference/1:7?madd_aared=3").json()["error"]["code"] == "bad_settings"


def test_start_with_recitation_settings(client):
    with client.websocket_connect("/ws/stream") as ws:
        ws.send_text(start_msg(settings={"madd_aared": 7}))
        assert json.loads(ws.receive_text())["data"]["code"] == "bad_settings"
        ws.send_text(start_msg(settings={"colour": 1}))
        assert json.loads(ws.receive_text())["data"]["code"] == "bad_settings"
        ws.send_text(start_msg(settings={"madd_aared": 6, "madd_monfasel": 5}))
        assert json.loads(ws.receive_text())["type"] == "ready"


def test_silence_is_no_speech_for_uploads_and_streams(client):
    """Silence is its own error code (no_speech), apart from unusable audio (bad_audio): a page
    tells a learner to come closer to the microphone, not that the file is broken."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(16000 * 2, np.float32), 16000, format="WAV", subtype="PCM_16")
    response = client.post("/api/analyze", files={"file": ("r.wav", buffer.getvalue())}, data={"ayah": "1:2"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "no_speech"
    quiet = (np.random.default_rng(0).standard_normal(16000 * 2) * 30).astype("<i2").tobytes()  # -60 dBFS hiss
    with client.websocket_connect("/ws/stream") as ws:
        ws.send_text(start_msg())
        assert json.loads(ws.receive_text())["type"] == "ready"
        ws.send_bytes(quiet)
        ws.send_text(json.dumps({"type": "stop"}))
        messages = receive(ws, until="error")
        assert messages[-1]["data"]["code"] == "no_speech"
