"""Soak: N clients stream real recitations over and over at real-time pace for M minutes.

    .venv/bin/python bench/soak.py [--clients 10] [--minutes 60] [--url ws://... | --redis-url redis://...]
                                   [--json out.json]

Without --url it starts `iqrah serve` on a free port (and stops it after). First each recording
is streamed once alone: its final report is the undisturbed one. Then every client loops over
the recordings (100 ms frames at real-time pace, stop, the final). Printed: streams finished,
errors, finals that differ from the undisturbed ones (timings aside: target 0), and the
server's resident memory at the start, its peak and at the end (growth: target small and not
ratcheting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
from stream_latency import start_local_server

FILES = [("offline-tarteel-test-corpus-001002.opus", 1, 2), ("offline-tarteel-test-corpus-112001.opus", 112, 1),
         ("offline-tarteel-test-corpus-v3-ea-alafasy-002263.opus", 2, 263)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _report(final: dict) -> dict:
    return {k: v for k, v in final.items() if k != "timings_ms"}


async def stream(url: str, pcm: bytes, surah: int, ayah: int, real_time: bool) -> tuple[dict | None, list[str]]:
    import websockets

    errors = []
    async with websockets.connect(url + "/ws/stream", max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "start", "data": {"protocol": "1.0", "surah": surah, "ayah": ayah,
                                                            "sample_rate": 16000, "encoding": "pcm_s16le"}}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i:i + 3200])
            if real_time:
                await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "stop"}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if msg["type"] == "error":
                errors.append(msg["data"]["code"])
            if msg["type"] == "final":
                return msg["data"], errors


async def soak(url: str, recordings: list, clients: int, seconds: float, pid: int | None) -> dict:
    expected = []
    for pcm, surah, ayah in recordings:  # undisturbed: one stream at a time, as fast as allowed
        final, errors = await stream(url, pcm, surah, ayah, real_time=False)
        expected.append(_report(final))
    memory = [rss_mb(pid)] if pid else []
    totals = {"streams": 0, "errors": 0, "differing": 0, "error_codes": {}}
    end = time.monotonic() + seconds

    async def client(k: int) -> None:
        i = k
        while time.monotonic() < end:
            pcm, surah, ayah = recordings[i % len(recordings)]
            try:
                final, errors = await stream(url, pcm, surah, ayah, real_time=True)
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                errors, final = [type(exc).__name__], None
            totals["streams"] += 1
            totals["errors"] += len(errors)
            for code in errors:
                totals["error_codes"][code] = totals["error_codes"].get(code, 0) + 1
            if final is None or _report(final) != expected[i % len(recordings)]:
                totals["differing"] += 1
            i += 1

    async def watch() -> None:
        while time.monotonic() < end:
            await asyncio.sleep(5)
            if pid:
                memory.append(rss_mb(pid))

    await asyncio.gather(watch(), *(client(k) for k in range(clients)))
    if pid:
        memory.append(rss_mb(pid))
    return totals | {"rss_mb": {"start": round(memory[0], 1), "peak": round(max(memory), 1),
                                "end": round(memory[-1], 1)} if memory else {}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--url", help="a running server (else one is started here)")
    parser.add_argument("--redis-url", help="the started server keeps its sessions in this Redis")
    parser.add_argument("--recitations", type=Path, default=root)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    from iqrah.audio import decode_audio

    recordings = [((np.clip(decode_audio(args.recitations / "dev" / f), -1, 1) * 32767).astype("<i2").tobytes(), s, a)
                  for f, s, a in FILES]
    server, url = None, args.url
    if url is None:
        server, url = start_local_server(*(["--redis-url", args.redis_url] if args.redis_url else []))
    try:
        out = asyncio.run(soak(url, recordings, args.clients, args.minutes * 60, server.pid if server else None))
    finally:
        if server:
            server.terminate()
            server.wait(30)
    out |= {"clients": args.clients, "minutes": args.minutes, "session_store": "redis" if args.redis_url else "memory"}
    print(f"{args.clients} clients, {args.minutes:g} min: {out['streams']} streams, {out['errors']} errors "
          f"{out['error_codes']}, {out['differing']} finals differing from the undisturbed ones; server RSS "
          f"{out.get('rss_mb')}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
