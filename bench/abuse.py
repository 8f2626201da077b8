"""Hostile and unlucky clients against a server, each case printed with its outcome; then how long a
live stream waits for its final report, undisturbed and while three clients abuse the server.

    .venv/bin/python bench/abuse.py [--url http://127.0.0.1:8000 --key K --abuser-keys A,B,C] [--json out.json]

Without --url it starts a server on a free local port the way ``iqrah serve`` does (uvicorn with
``uvicorn_options``), with API keys ``live,abuser1,abuser2,abuser3`` so that the live client and
each abuser are distinct clients for the per-client limits (on one machine they share an IP
address), and ``IQRAH_BODY_TIMEOUT=10`` to keep the run short; other limits are the defaults.

The live stream: Alafasy reciting 1:2 (dev split, 5.5 s) sent at real-time pace in 100 ms frames;
its final delay is from ``stop`` to ``final``. The abusers: each uploads Alafasy's 2:282 (145 s)
again and again, and streams 2:282 as fast as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

LIVE = "dev/offline-tarteel-test-corpus-001002.opus"  # 1:2
LONG = "dev/offline-tarteel-test-corpus-v3-ea-alafasy-002282.opus"  # 2:282, 145 s
FRAME = 3200  # 100 ms of PCM16 at 16 kHz


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def start(surah=1, ayah=2, **extra) -> str:
    return json.dumps({"type": "start", "data": {"protocol": "1.0", "surah": surah, "ayah": ayah,
                                                 "sample_rate": 16000, "encoding": "pcm_s16le", **extra}})


class Target:
    def __init__(self, url: str, key: str | None, abusers: list[str | None]):
        self.http = url.rstrip("/")
        self.ws = self.http.replace("http", "ws", 1) + "/ws/stream"
        self.host, self.port = self.http.split("//")[1].split(":")[0], int(self.http.rsplit(":", 1)[1])
        self.key, self.abusers = key, abusers
        self.pid: int | None = None  # the server's, when this script started it (for its memory)

    def rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        with open(f"/proc/{self.pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    def headers(self, key) -> dict:
        return {"X-API-Key": key} if key else {}

    def get(self, path, key=None, headers=None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.http + path, headers={**self.headers(key), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def upload(self, data: bytes, ayah: str, key=None) -> tuple[int, float]:
        boundary = "abuse"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"ayah\"\r\n\r\n{ayah}\r\n--{boundary}\r\n"
                f"Content-Disposition: form-data; name=\"file\"; filename=\"r.wav\"\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.http + "/api/analyze", data=body, method="POST", headers={
            **self.headers(key), "Content-Type": f"multipart/form-data; boundary={boundary}"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                r.read()
                return r.status, time.perf_counter() - t0
        except urllib.error.HTTPError as exc:
            return exc.code, time.perf_counter() - t0

    def connect(self, key=None, **kwargs):
        from websockets.asyncio.client import connect

        return connect(self.ws, additional_headers=self.headers(key), max_size=2**24, proxy=None, **kwargs)


async def until(ws, kinds: tuple[str, ...], timeout: float = 60.0) -> dict:
    """The next message of one of ``kinds`` (pings answered)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if msg["type"] in kinds:
            return msg
        if msg["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))


def close_code(exc: BaseException) -> str:
    rcvd = getattr(exc, "rcvd", None)
    return f"closed {rcvd.code}" if rcvd else type(exc).__name__


# ---- the cases --------------------------------------------------------------------------------

async def half_open_http(t: Target) -> str:
    """200 sockets: 100 silent, 100 sending half a request; /health meanwhile; who closes them."""
    socks = []
    for i in range(200):
        reader, writer = await asyncio.open_connection(t.host, t.port)
        if i % 2:
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        socks.append((reader, writer))
    t0 = time.perf_counter()
    status, _ = await asyncio.to_thread(t.get, "/health")
    health_ms = (time.perf_counter() - t0) * 1000

    async def closed(reader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), 25) == b""
        except (TimeoutError, ConnectionError):
            return False

    t0 = time.perf_counter()
    results = await asyncio.gather(*(closed(r) for r, _ in socks))
    for _, writer in socks:
        writer.close()
    return (f"/health {status} in {health_ms:.0f} ms with them open; {sum(results)}/200 closed by the server "
            f"within {time.perf_counter() - t0:.1f} s")


async def oversize_upload_declared(t: Target) -> str:
    reader, writer = await asyncio.open_connection(t.host, t.port)
    key = f"X-API-Key: {t.abusers[0]}\r\n" if t.abusers[0] else ""
    t0 = time.perf_counter()
    writer.write(f"POST /api/analyze HTTP/1.1\r\nHost: x\r\n{key}Content-Type: multipart/form-data; boundary=b\r\n"
                 "Content-Length: 1000000000\r\n\r\n".encode() + b"x" * 65536)
    line = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return f"Content-Length 1 GB: {line.decode().strip()} after {(time.perf_counter() - t0) * 1000:.0f} ms"


async def oversize_upload_chunked(t: Target) -> str:
    reader, writer = await asyncio.open_connection(t.host, t.port)
    key = f"X-API-Key: {t.abusers[0]}\r\n" if t.abusers[0] else ""
    writer.write(f"POST /api/analyze HTTP/1.1\r\nHost: x\r\n{key}Content-Type: multipart/form-data; boundary=b\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n" + b"x" * (1 << 20)
    sent = 0
    read = asyncio.ensure_future(reader.readline())
    try:
        while not read.done() and sent < 200 << 20:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0)
        line = await asyncio.wait_for(read, 30)
    except (ConnectionError, TimeoutError) as exc:
        line = repr(exc).encode()
    writer.close()
    return f"chunked, no length: {line.decode().strip()} after {sent / 2**20:.0f} MB sent"


async def stalled_upload(t: Target) -> str:
    reader, writer = await asyncio.open_connection(t.host, t.port)
    key = f"X-API-Key: {t.abusers[0]}\r\n" if t.abusers[0] else ""
    t0 = time.perf_counter()
    writer.write(f"POST /api/analyze HTTP/1.1\r\nHost: x\r\n{key}Content-Type: multipart/form-data; boundary=b\r\n"
                 "Content-Length: 5000\r\n\r\n--b\r\n".encode())
    try:
        line = (await asyncio.wait_for(reader.readline(), 120)).decode().strip()
    except TimeoutError:
        line = "no answer in 120 s"
    writer.close()
    return f"a body that stops: {line} after {time.perf_counter() - t0:.1f} s"


async def oversize_ws_message(t: Target) -> str:
    """16 MB messages on 10 connections at once: refused, and the server's memory after."""
    before = t.rss_mb()

    async def push() -> str:
        async with t.connect(t.abusers[0]) as ws:
            await ws.send(start())
            await until(ws, ("ready",))
            try:
                await ws.send(b"\x00" * (16 << 20))
                reply = await until(ws, ("error",), 30)
                return f"answered {reply['data']['code']}, connection open"
            except Exception as exc:  # noqa: BLE001 - what happened is the outcome
                return close_code(exc)

    outcomes = await asyncio.gather(*(push() for _ in range(10)))
    after = t.rss_mb()
    memory = f"; server RSS {before:.0f} -> {after:.0f} MB" if before else ""
    return f"16 MB message x10: {', '.join(f'{o} x{outcomes.count(o)}' for o in sorted(set(outcomes)))}{memory}"


async def idle_sockets(t: Target) -> str:
    """150 sockets that never start (and answer pings); a live client meanwhile."""
    opened, refused = [], 0
    for _ in range(150):
        ws = await t.connect(t.abusers[1])
        opened.append(ws)
    await asyncio.sleep(0.5)
    for ws in opened:
        if ws.close_code is not None:
            refused += 1
    t0 = time.perf_counter()
    async with t.connect(t.key) as live:
        await live.send(start())
        reply = await until(live, ("ready", "error"))
    ready = f"live client {'ready' if reply['type'] == 'ready' else reply['data']['code']} in " \
            f"{(time.perf_counter() - t0) * 1000:.0f} ms"
    codes = []

    async def wait_close(ws):
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except Exception as exc:  # noqa: BLE001
            codes.append(close_code(exc))

    t0 = time.perf_counter()
    await asyncio.gather(*(wait_close(ws) for ws in opened))
    kinds = {c: codes.count(c) for c in set(codes)}
    return (f"{150 - refused} accepted, {refused} refused at connect (per-client limit); {ready}; all closed "
            f"within {time.perf_counter() - t0:.1f} s: {kinds}")


async def too_fast(t: Target, long_pcm: bytes) -> str:
    async with t.connect(t.abusers[2]) as ws:
        await ws.send(start(2, 282))
        await until(ws, ("ready",), 120)
        t0 = time.perf_counter()
        for i in range(0, len(long_pcm), FRAME):
            await ws.send(long_pcm[i:i + FRAME])
        await ws.send(json.dumps({"type": "dance"}))
        refused, kept = 0, None
        while True:
            msg = await until(ws, ("error",), 120)
            if msg["data"]["code"] == "unknown_type":
                break
            refused += msg["data"]["code"] == "too_fast"
            kept = msg["data"].get("audio_ms", kept)
        return (f"{len(long_pcm) / 32000:.0f} s of audio in {time.perf_counter() - t0:.1f} s: {refused} frames "
                f"refused too_fast, {kept} ms kept")


async def hijack(t: Target, live_pcm: bytes) -> str:
    async with t.connect(t.key) as owner:
        await owner.send(start())
        ready = (await until(owner, ("ready",)))["data"]
        await owner.send(live_pcm[:32000])
        async with t.connect(t.abusers[0]) as thief:
            await thief.send(start(session_id=ready["session_id"]))
            reply = (await until(thief, ("ready", "error")))["data"]
    return f"second client with the live session's id: {reply.get('code', 'attached!')}"


async def access(t: Target) -> str:
    out = []
    status, _ = await asyncio.to_thread(t.get, "/metrics")
    out.append(f"/metrics without key {status}")
    status, _ = await asyncio.to_thread(t.get, "/docs")
    out.append(f"/docs without key {status}")
    try:
        async with t.connect(t.key, origin="https://evil.example") as ws:
            await ws.send(start())
            reply = await until(ws, ("ready", "error"))
            out.append(f"ws from another site: {reply['type']}")
    except Exception as exc:  # noqa: BLE001
        out.append(f"ws from another site: {getattr(getattr(exc, 'response', None), 'status_code', type(exc).__name__)}")
    try:
        async with t.connect("wrong-key") as ws:
            out.append("ws with a wrong key: accepted")
    except Exception as exc:  # noqa: BLE001
        out.append(f"ws with a wrong key: {getattr(getattr(exc, 'response', None), 'status_code', type(exc).__name__)}")
    return "; ".join(out)


async def bad_messages(t: Target) -> str:
    cases = {"deep JSON": "[" * 100_000 + "]" * 100_000, "surah true": start(surah=True),
             "encoding []": start(encoding=[]), "unknown type": json.dumps({"type": "x"})}
    out = []
    async with t.connect(t.abusers[0]) as ws:
        for name, raw in cases.items():
            await ws.send(raw)
            out.append(f"{name} -> {(await until(ws, ('error', 'ready')))['data'].get('code')}")
        await ws.send(start(encoding="f32le"))
        await until(ws, ("ready",))
        for name, frame in (("NaN f32", np.array([np.nan] * 64, "<f4")), ("1e30 f32", np.array([1e30] * 64, "<f4"))):
            await ws.send(frame.tobytes())
            await ws.send(json.dumps({"type": "dance"}))
            code = (await until(ws, ("error",)))["data"].get("code")
            out.append(f"{name} -> {'accepted (clipped)' if code == 'unknown_type' else code}")
            if code != "unknown_type":
                await until(ws, ("error",))
    return "; ".join(out)


async def connection_flood(t: Target) -> str:
    socks, refused = [], 0
    for _ in range(30):
        socks.append(await t.connect(t.abusers[0]))
    await asyncio.sleep(0.5)
    refused = sum(ws.close_code == 1013 for ws in socks)
    for ws in socks:
        await ws.close()
    return f"30 connections of one client at once: {30 - refused} accepted, {refused} refused (1013)"


async def upload_flood(t: Target) -> str:
    statuses = []
    for _ in range(35):
        statuses.append((await asyncio.to_thread(t.upload, b"RIFF nope", "1:2", t.abusers[1]))[0])
    return "35 uploads in a row: " + ", ".join(f"{s} x{statuses.count(s)}" for s in sorted(set(statuses)))


# ---- fairness ---------------------------------------------------------------------------------

async def live_final_delay(t: Target, pcm: bytes) -> float | str:
    """Seconds from stop to final, or what ended the stream instead."""
    try:
        return await _live_final_delay(t, pcm)
    except Exception as exc:  # noqa: BLE001 - e.g. closed for a ping timeout while the final waited
        return f"no final: {close_code(exc)} {getattr(getattr(exc, 'rcvd', None), 'reason', '')}".strip()


async def _live_final_delay(t: Target, pcm: bytes) -> float:
    async with t.connect(t.key) as ws:
        await ws.send(start())
        await until(ws, ("ready",))
        t0 = time.perf_counter()
        reader = asyncio.ensure_future(until(ws, ("final",), 600))
        for k, i in enumerate(range(0, len(pcm), FRAME)):
            await asyncio.sleep(max(0.0, t0 + k * 0.1 - time.perf_counter()))
            await ws.send(pcm[i:i + FRAME])
        await asyncio.sleep(max(0.0, t0 + len(pcm) / 32000 - time.perf_counter()))
        stopped = time.perf_counter()
        await ws.send(json.dumps({"type": "stop"}))
        await reader
        return time.perf_counter() - stopped


async def abuser(t: Target, key, wav: bytes, long_pcm: bytes, stop: asyncio.Event, log: list) -> None:
    """Long uploads one after another, and a stream of the same recording as fast as it goes."""
    async def uploads():
        while not stop.is_set():
            log.append(await asyncio.to_thread(t.upload, wav, "2:282", key))

    async def stream():
        while not stop.is_set():
            async with t.connect(key) as ws:
                await ws.send(start(2, 282))
                await until(ws, ("ready",), 120)
                for i in range(0, len(long_pcm), FRAME):
                    if stop.is_set():
                        return
                    await ws.send(long_pcm[i:i + FRAME])
                    await asyncio.sleep(0)

    await asyncio.gather(uploads(), stream(), return_exceptions=True)


async def fairness(t: Target, live_pcm: bytes, wav: bytes, long_pcm: bytes, runs: int) -> dict:
    calm = [await live_final_delay(t, live_pcm) for _ in range(runs)]
    stop, log = asyncio.Event(), []
    abusers = [asyncio.ensure_future(abuser(t, key, wav, long_pcm, stop, log)) for key in t.abusers[:3]]
    await asyncio.sleep(3)  # the uploads are in
    busy = [await live_final_delay(t, live_pcm) for _ in range(runs)]
    stop.set()
    await asyncio.gather(*abusers, return_exceptions=True)
    def median(xs):
        xs = [x for x in xs if isinstance(x, float)]
        return statistics.median(xs) if xs else float("nan")

    def shown(xs):
        return [round(x, 2) if isinstance(x, float) else x for x in xs]

    return {"undisturbed_s": shown(calm), "abused_s": shown(busy), "ratio": round(median(busy) / median(calm), 2),
            "uploads_during": [(s, round(d, 1)) for s, d in log]}


# ---- main -------------------------------------------------------------------------------------

def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import uvicorn\nfrom iqrah.server.app import ServerConfig, create_app\n"
            "from iqrah.server.http_limits import uvicorn_options\nconfig = ServerConfig()\n"
            f"uvicorn.run(create_app(config), host='127.0.0.1', port={port}, log_level='error', "
            "**uvicorn_options(config))\n")
    env = {**os.environ, "IQRAH_API_KEYS": "live,abuser1,abuser2,abuser3", "IQRAH_BODY_TIMEOUT": "10"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--key", help="API key of the live client (with --url)")
    parser.add_argument("--abuser-keys", default="", help="comma-separated API keys of three abusers (with --url)")
    parser.add_argument("--recitations", type=Path, default=root)
    parser.add_argument("--runs", type=int, default=3, help="live streams timed, undisturbed and abused")
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--json")
    args = parser.parse_args()

    import soundfile as sf

    from iqrah.audio import decode_audio

    live = decode_audio(args.recitations / LIVE)
    long = decode_audio(args.recitations / LONG)
    wav = io.BytesIO()
    sf.write(wav, long, 16000, format="WAV", subtype="PCM_16")
    server, url = (None, args.url) if args.url else start_server()
    if args.url:
        abusers = [k or None for k in args.abuser_keys.split(",")] if args.abuser_keys else [None] * 3
        target = Target(url, args.key, (abusers + [None] * 3)[:3])
    else:
        target = Target(url, "live", ["abuser1", "abuser2", "abuser3"])
        target.pid = server.pid
    cases = {
        "half-open HTTP sockets": lambda: half_open_http(target),
        "oversize upload (declared)": lambda: oversize_upload_declared(target),
        "oversize upload (chunked)": lambda: oversize_upload_chunked(target),
        "stalled upload body": lambda: stalled_upload(target),
        "oversize WebSocket message": lambda: oversize_ws_message(target),
        "idle WebSockets": lambda: idle_sockets(target),
        "audio faster than real time": lambda: too_fast(target, pcm16(long)),
        "session hijack": lambda: hijack(target, pcm16(live)),
        "access control": lambda: access(target),
        "bad messages": lambda: bad_messages(target),
        "connection flood (one client)": lambda: connection_flood(target),
        "upload flood (one client)": lambda: upload_flood(target),
    }
    only = set(args.only.split(",")) if args.only else None
    results = {}
    try:
        for name, case in cases.items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            try:
                outcome = asyncio.run(case())
            except Exception as exc:  # noqa: BLE001 - a case that breaks is an outcome too
                outcome = f"FAILED: {exc!r}"
            results[name] = outcome
            print(f"{name} -> {outcome}  [{time.perf_counter() - t0:.1f} s]", flush=True)
        if not only or "fairness" in only:
            fair = asyncio.run(fairness(target, pcm16(live), wav.getvalue(), pcm16(long), args.runs))
            results["fairness"] = fair
            print(f"live final delay (stop -> final), undisturbed: {fair['undisturbed_s']} s; while three clients "
                  f"upload 2:282 (145 s) and stream it as fast as they can: {fair['abused_s']} s; median ratio "
                  f"{fair['ratio']}x; abusers' uploads meanwhile: {fair['uploads_during']}")
        status, body = target.get("/health")
        print(f"/health after: {status} {body.decode()[:200]}")
    finally:
        if server:
            server.terminate()
            server.wait(30)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
