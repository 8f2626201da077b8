"""Failover for real, without Docker: redis-server, NGINX with the shipped config and two
``iqrah serve`` processes on loopback. A recitation streams through NGINX; the server holding it
is SIGKILLed mid-ayah; the client reconnects through NGINX with its session and token, resends
what the new server does not hold, and gets the final report an uninterrupted run gets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FILE = "dev/offline-tarteel-test-corpus-v3-ea-alafasy-005058.opus"  # 5:58, 15 s


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float = 90.0) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


class Servers(dict):
    """port -> the ``iqrah serve`` process on it; ``start`` (re)starts one on a port."""

    def __init__(self, env: dict, folder: Path):
        super().__init__()
        self.env, self.folder = env, folder

    def start(self, port: int) -> None:
        self[port] = subprocess.Popen([sys.executable, "-m", "iqrah.cli", "serve", "--host", "127.0.0.1",
                                       "--port", str(port)], env=self.env, stdout=subprocess.DEVNULL,
                                      stderr=open(self.folder / f"server-{port}.log", "a"))

    def ensure_all_up(self) -> None:
        for port, proc in list(self.items()):
            if proc.poll() is not None:
                self.start(port)
        for port in self:
            _wait_http(f"http://127.0.0.1:{port}/health")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(nginx url, {port: server process}) with redis behind them; everything stopped after."""
    from iqrah.acoustic.onnx_model import bundled_model_path

    nginx, redis = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("redis-server")
    if not Path(nginx).exists() or redis is None:
        pytest.skip("nginx and redis-server are needed (.ci/run installs them)")
    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    tmp = tmp_path_factory.mktemp("failover")
    procs = []
    redis_port = _port()
    procs.append(subprocess.Popen([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL))
    env = os.environ | {"IQRAH_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "IQRAH_CACHE": "none"}
    servers = Servers(env, tmp)
    for _ in range(2):
        servers.start(_port())
    nginx_port = _port()
    ports = list(servers)
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    conf = conf.replace("iqrah-1:8000", f"127.0.0.1:{ports[0]}").replace("iqrah-2:8000", f"127.0.0.1:{ports[1]}")
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{nginx_port};")
    conf = conf.replace("worker_processes auto;", f"worker_processes 1;\npid {tmp}/nginx.pid;\n"
                        f"error_log {tmp}/nginx-error.log;")
    conf = conf.replace("http {", f"http {{\n    client_body_temp_path {tmp};\n    proxy_temp_path {tmp};")
    (tmp / "nginx.conf").write_text(conf)
    procs.append(subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                                  stderr=subprocess.DEVNULL))
    try:
        for port in ports:
            _wait_http(f"http://127.0.0.1:{port}/health")
        _wait_http(f"http://127.0.0.1:{nginx_port}/health")
        yield f"127.0.0.1:{nginx_port}", servers
    finally:
        procs += list(servers.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def pcm(recitations) -> bytes:
    from iqrah.audio import decode_audio

    audio = decode_audio(recitations / FILE)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


START = {"protocol": "1.0", "surah": 5, "ayah": 58, "sample_rate": 16000, "encoding": "pcm_s16le"}


def _send(ws, pcm: bytes) -> None:
    for i in range(0, len(pcm), 3200):
        ws.send(pcm[i:i + 3200])


def _until(ws, kind: str, timeout: float = 120.0) -> list[dict]:
    out = []
    deadline = time.time() + timeout
    while True:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.time())))
        out.append(msg)
        if msg["type"] == kind:
            return out
        if msg["type"] == "error" and kind != "error":
            raise AssertionError(msg)


def _streams(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("iqrah_active_streams "):
                return float(line.split()[1])
    return 0.0


def _resume(url: str, session: str, token: str, pcm: bytes) -> tuple[int, dict, float]:
    """Reconnect through NGINX with the session and its token, resend what the server does not
    hold, stop: (audio_ms it held, the final report, when ready came)."""
    from websockets.sync.client import connect

    with connect(f"ws://{url}/ws/stream?session={session}", max_size=2**24) as ws:
        ws.send(json.dumps({"type": "start", "data": START | {"session_id": session, "resume_token": token}}))
        held_ms = _until(ws, "ready")[-1]["data"]["resumed_from"]["audio_ms"]
        ready_at = time.time()
        _send(ws, pcm[held_ms * 32:])
        ws.send(json.dumps({"type": "stop"}))
        return held_ms, _until(ws, "final")[-1]["data"], ready_at


def _report(final: dict) -> dict:
    return {k: v for k, v in final.items() if k != "timings_ms"}


def test_sigkill_mid_ayah_resumes_through_nginx_with_the_same_report(cluster, pcm):
    from websockets.sync.client import connect

    url, servers = cluster
    servers.ensure_all_up()
    with connect(f"ws://{url}/ws/stream", max_size=2**24) as ws:  # the run nothing interrupts
        ws.send(json.dumps({"type": "start", "data": START}))
        _until(ws, "ready")
        _send(ws, pcm)
        ws.send(json.dumps({"type": "stop"}))
        reference = _until(ws, "final")[-1]["data"]

    half = len(pcm) // 2 // 3200 * 3200
    with connect(f"ws://{url}/ws/stream", max_size=2**24) as ws:
        ws.send(json.dumps({"type": "start", "data": START}))
        ready = _until(ws, "ready")[-1]["data"]
        session, token = ready["session_id"], ready["resume_token"]
        _send(ws, pcm[:half])
        words = [m for m in _until(ws, "word") if m["type"] == "word"]
        time.sleep(1.0)  # the server saves what it has as it goes: let the last save land
        holder = next(port for port in servers if _streams(port) >= 1)
        servers[holder].send_signal(signal.SIGKILL)
        killed = time.time()
        servers[holder].wait(10)
        try:
            while True:
                ws.recv(timeout=10)
        except Exception:  # noqa: BLE001 - the connection dies with the server
            pass
    reconnected = time.time()
    held_ms, final, resumed = _resume(url, session, token, pcm)
    assert 0 < held_ms <= half // 32
    survivor = next(port for port in servers if port != holder)
    assert servers[survivor].poll() is None
    assert _report(final) == _report(reference)  # the same report: no word lost, nothing judged twice
    assert {w["index"] for w in final["words"] if w["start"] is not None} >= {w["data"]["index"] for w in words}
    print(f"\nfailover: kill -> ready on the other server {resumed - killed:.2f} s "
          f"(after the reconnect {resumed - reconnected:.2f} s); audio held {held_ms} ms of {half // 32} ms sent")


def test_sigterm_drains_behind_nginx_and_the_stream_resumes_elsewhere(cluster, pcm):
    """A rolling restart: SIGTERM to the server holding a stream; it saves the session and tells
    the client (shutting_down, close 1012); the client resumes through NGINX on the other server
    and gets the whole report. Nothing is lost."""
    from websockets.sync.client import connect

    url, servers = cluster
    servers.ensure_all_up()
    half = len(pcm) // 2 // 3200 * 3200
    with connect(f"ws://{url}/ws/stream", max_size=2**24) as ws:
        ws.send(json.dumps({"type": "start", "data": START}))
        ready = _until(ws, "ready")[-1]["data"]
        session, token = ready["session_id"], ready["resume_token"]
        _send(ws, pcm[:half])
        _until(ws, "word")
        holder = next(port for port in servers if _streams(port) >= 1)
        servers[holder].send_signal(signal.SIGTERM)
        told = _until(ws, "error", timeout=30)[-1]["data"]
        assert told["code"] == "shutting_down"
    # it drained and stopped (uvicorn re-raises the SIGTERM it caught once shut down: status -15)
    assert servers[holder].wait(30) in (0, -signal.SIGTERM)
    held_ms, final, _ = _resume(url, session, token, pcm)
    assert held_ms == half // 32  # everything sent before the restart was saved
    assert final["duration_s"] == pytest.approx(len(pcm) / 32000, abs=0.01)
    assert all(w["start"] is not None for w in final["words"])
