"""Latency of live feedback: N clients replay real recitations at real-time pace over /ws/stream.

    .venv/bin/python bench/stream_latency.py --clients 10 [--url ws://127.0.0.1:8000] [--model M.onnx] [--json out.json]

Without --url it starts `iqrah serve` on a free local port and stops it afterwards. Each client
streams a dev recording (from the manifest) in 100 ms binary frames at real-time pace, then
sends stop. Printed per client and overall: processing latency (arrival of an event minus the
sending of the chunk that completed its ``audio_ms``) p50/p95/p99; word feedback delay (the
word's end in the audio, as the final report places it, to its first ``word`` event: a word sent
early with a wrong end gains nothing); errors; and the mean time per stage from the server's
/metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHUNK_MS = 100


def pct(values, q):
    return round(float(np.percentile(values, q)) * 1000, 1) if len(values) else None


async def client(url: str, audio: np.ndarray, spec: tuple[int, int], index: int) -> dict:
    import websockets

    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    chunk = 16000 * 2 * CHUNK_MS // 1000
    sends: list[tuple[int, float]] = []  # (audio_ms at the end of the chunk, send time)
    latencies, word_delays, errors = [], [], []
    live: list[float] = []  # latencies of the events that came before the client sent stop
    late: list[tuple[str, float]] = []  # (type, latency) of the events after stop, before the final
    first_sent: dict[int, tuple[float, float]] = {}  # word index -> (arrival, end it was sent with)
    async with websockets.connect(f"{url}/ws/stream", max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "start", "data": {"protocol": "1.0", "surah": spec[0], "ayah": spec[1],
                                                            "sample_rate": 16000, "encoding": "pcm_s16le"}}))
        ready = json.loads(await ws.recv())
        if ready["type"] != "ready":
            return {"client": index, "errors": [ready["data"]]}
        t0 = time.perf_counter()
        done, stopped = asyncio.Event(), asyncio.Event()
        stop_sent, final_wait = [0.0], []  # when stop was sent; how long the final report took after it

        async def reader():
            while True:
                msg = json.loads(await ws.recv())
                now = time.perf_counter()
                kind, data = msg["type"], msg["data"]
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "data": {}}))
                elif kind == "error":
                    errors.append(data)
                    if data.get("code") == "bad_audio" and stopped.is_set():
                        # e.g. no speech in this recording: the answer to stop, no final report
                        word_delays.extend(arrival - (t0 + end) for arrival, end in first_sent.values())
                        done.set()
                        return
                if "audio_ms" in data and kind in ("partial", "word", "violation"):
                    sent = next((t for ms, t in sends if ms >= data["audio_ms"]), None)
                    if sent is not None:
                        latencies.append(now - sent)
                        if not stopped.is_set():
                            live.append(now - sent)
                        else:
                            late.append((kind, now - sent))
                if kind == "word" and data["index"] not in first_sent:
                    first_sent[data["index"]] = (now, data["end"])
                if kind == "final":
                    final_wait.append(now - stop_sent[0])
                    final_end = {w["index"]: w["end"] for w in data["words"] if w["end"] is not None}
                    for w, (arrival, sent_end) in first_sent.items():
                        word_delays.append(arrival - (t0 + final_end.get(w, sent_end)))
                    done.set()
                    return

        task = asyncio.create_task(reader())
        for k, i in enumerate(range(0, len(pcm), chunk)):
            await asyncio.sleep(max(0.0, t0 + k * CHUNK_MS / 1000 - time.perf_counter()))
            frame = pcm[i:i + chunk]
            sends.append((int((i + len(frame)) / 32), time.perf_counter()))
            await ws.send(frame)
        stopped.set()
        stop_sent[0] = time.perf_counter()
        await ws.send(json.dumps({"type": "stop", "data": {}}))
        await asyncio.wait_for(done.wait(), timeout=120)
        await task
    return {"client": index, "latencies": latencies, "live": live, "late": late, "final_wait": final_wait,
            "word_delays": word_delays, "errors": errors, "audio_s": len(pcm) / 32000}


def start_local_server(*options: str) -> tuple[subprocess.Popen, str]:
    """``iqrah serve`` on a free local port, once its /health answers: (process, ws:// url).
    Every client of a benchmark comes from this machine, one IP: no per-client caps, no cache."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "iqrah.cli", "serve", "--port", str(port),
                               "--client-connections", "0", "--client-audio-per-minute", "0",
                               "--client-connects-per-minute", "0", "--cache", "none", *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"ws://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    return server, url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_means(url: str) -> dict:
    text = urllib.request.urlopen(url.replace("ws://", "http://") + "/metrics", timeout=10).read().decode()
    sums = dict(re.findall(r'iqrah_stage_seconds_sum\{stage="(\w+)"\} ([0-9.e+-]+)', text))
    counts = dict(re.findall(r'iqrah_stage_seconds_count\{stage="(\w+)"\} ([0-9.e+-]+)', text))
    return {s: round(float(sums[s]) / float(counts[s]) * 1000, 1) for s in sums if float(counts.get(s, 0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--url")
    parser.add_argument("--manifest", type=Path, default=root / "manifest.csv")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="cut recordings to this length")
    parser.add_argument("--model", help="acoustic model for the server it starts (default: the bundled one)")
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah.audio import decode_audio

    with open(args.manifest, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "dev" and r["ayah"] == r["ayah_end"]
                and r["ayah"] != "0" and 4 < float(r["duration_s"]) < 30 and not r["text"]]
    recordings = []
    for row in rows[: max(args.clients, 1) * 2][: args.clients]:
        audio = decode_audio(args.manifest.parent / row["file"])[: int(args.max_seconds * 16000)]
        recordings.append((audio, (int(row["surah"]), int(row["ayah"]))))
    while len(recordings) < args.clients:
        recordings.append(recordings[len(recordings) % max(len(rows), 1)])

    server = None
    url = args.url
    if url is None:
        server, url = start_local_server("--max-connections", str(max(100, args.clients)),
                                         *(["--model", args.model] if args.model else []))
    try:
        async def run_all():
            return await asyncio.gather(*(client(url, a, s, i) for i, (a, s) in enumerate(recordings)),
                                        return_exceptions=True)

        results = asyncio.run(run_all())
        stages = stage_means(url)
    finally:
        if server:
            server.terminate()
            server.wait(30)

    failures = [r for r in results if isinstance(r, BaseException)]
    results = [r for r in results if not isinstance(r, BaseException)]
    print(f"{args.clients} clients, 100 ms frames at real-time pace")
    print(f"{'client':>6} {'audio s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'word p50':>9} {'word p95':>9} {'errors':>6}")
    for r in results:
        print(f"{r['client']:>6} {r.get('audio_s', 0):8.1f} {pct(r.get('latencies', []), 50) or '':>8} "
              f"{pct(r.get('latencies', []), 95) or '':>8} {pct(r.get('latencies', []), 99) or '':>8} "
              f"{pct(r.get('word_delays', []), 50) or '':>9} {pct(r.get('word_delays', []), 95) or '':>9} "
              f"{len(r.get('errors', [])):>6}")
    lat = [x for r in results for x in r.get("latencies", [])]
    words = [x for r in results for x in r.get("word_delays", [])]
    live = [x for r in results for x in r.get("live", [])]
    late = [x for r in results for x in r.get("late", [])]
    final_wait = [x for r in results for x in r.get("final_wait", [])]
    overall = {"clients": args.clients, "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
               "live_p50_ms": pct(live, 50), "live_p95_ms": pct(live, 95),
               "after_stop": {kind: {"events": n, "p50_ms": pct(v, 50), "p95_ms": pct(v, 95)}
                              for kind in ("word", "violation", "partial")
                              if (n := len(v := [x for k, x in late if k == kind]))},
               "final_after_stop_p50_ms": pct(final_wait, 50), "final_after_stop_p95_ms": pct(final_wait, 95),
               "word_delay_p50_ms": pct(words, 50), "word_delay_p95_ms": pct(words, 95),
               "errors": sum(len(r.get("errors", [])) for r in results), "failed_clients": len(failures),
               "stages_mean_ms": stages}
    print(f"overall: p50 {overall['p50_ms']} ms, p95 {overall['p95_ms']} ms, p99 {overall['p99_ms']} ms; "
          f"word delay p50 {overall['word_delay_p50_ms']} ms, p95 {overall['word_delay_p95_ms']} ms; "
          f"errors {overall['errors']}, failed clients {len(failures)}")
    print(f"events before stop only: p50 {overall['live_p50_ms']} ms, p95 {overall['live_p95_ms']} ms")
    print(f"events after stop ({len(late)} of {len(lat)}):", "; ".join(
        f"{k} {v['events']} p50 {v['p50_ms']} ms p95 {v['p95_ms']} ms" for k, v in overall["after_stop"].items()))
    print(f"final report after stop: p50 {overall['final_after_stop_p50_ms']} ms, "
          f"p95 {overall['final_after_stop_p95_ms']} ms")
    print("mean per stage (ms):", ", ".join(f"{k} {v}" for k, v in stages.items()))
    for failure in failures[:3]:
        print("client failure:", repr(failure))
    if args.json:
        raw = ("latencies", "live", "late", "final_wait", "word_delays")
        Path(args.json).write_text(json.dumps({"overall": overall, "clients": [
            {k: v for k, v in r.items() if k not in raw} for r in results]}, indent=2))


if __name__ == "__main__":
    main()
