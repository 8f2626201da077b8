"""How fast the reference cache answers, and what it saves at start-up.

    .venv/bin/python bench/cache_speed.py [--redis-url redis://127.0.0.1:6379/0] [--gets 5000] [--json out.json]

1. get latency (p50, p99, max in ms) of SQLite and of Redis (the URL given, else a redis-server
   started on loopback when one is installed) for a reciter entry (word spans, a pitch contour
   of 20 ms frames, tempo, madd durations of a 15 s ayah) and for the text reference of 2:282
   (as stored: columns; and with the Reference objects built from it);
2. the text references of a few ayahs built from the phonetizer (a cold cache) against read back
   from the cache (warm), as a server's first request for each ayah pays it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from iqrah.cache import RedisCache, SQLiteCache, cache_key

AYAHS = ["1:1-7", "2:255", "2:282", "5:58", "112:1-4", "36:1-12"]


def reciter_entry(rng) -> dict:
    words = [[i, round(i * 0.6, 3), round(i * 0.6 + 0.55, 3)] for i in range(25)]
    return {"words": words, "pitch": [round(float(x), 1) for x in 110 + 20 * rng.standard_normal(750)],
            "tempo": 7.9, "madd": [[3, 4.1], [9, 2.0], [17, 5.8]], "audio": "husary/005058.mp3"}


def latencies(cache, key: str, gets: int, then=lambda value: value) -> dict:
    cache.get(key)
    times = []
    for _ in range(gets):
        start = time.perf_counter()
        then(cache.get(key))
        times.append((time.perf_counter() - start) * 1000)
    t = np.array(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
            "max_ms": round(float(t.max()), 3)}


def start_redis(folder: str) -> tuple[subprocess.Popen | None, str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", folder], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        try:
            RedisCache(url).client.ping()
            break
        except Exception:
            time.sleep(0.1)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--gets", type=int, default=5000)
    parser.add_argument("--json")
    args = parser.parse_args()
    from iqrah.quran import build_reference
    from iqrah.quran.reference import use_reference_cache

    rng = np.random.default_rng(0)
    folder = tempfile.mkdtemp()
    proc, url = (None, args.redis_url) if args.redis_url else start_redis(folder)
    stores = {"sqlite": SQLiteCache(Path(folder) / "cache.sqlite3")}
    if url:
        stores["redis"] = RedisCache(url)
    from iqrah.quran.reference import Reference

    text = build_reference("2:282").to_columns()  # as stored_reference keeps it
    out = {"gets": args.gets, "get": {}, "startup_ms": {}}
    try:
        for name, cache in stores.items():
            entries = {"reciter entry": (cache_key("0.5.0", "husary", 5, 58), reciter_entry(rng)),
                       "text reference 2:282": (cache_key("qt", "text-x", 2, 282), text)}
            for label, (key, value) in entries.items():
                cache.put(key, value)
                out["get"][f"{name}: {label}"] = latencies(cache, key, args.gets)
            out["get"][f"{name}: text reference 2:282 + objects"] = latencies(
                cache, entries["text reference 2:282"][0], args.gets, Reference.from_columns)
        cache = stores["sqlite"]
        for spec in AYAHS:
            use_reference_cache(cache)
            start = time.perf_counter()
            build_reference(spec)  # cold: phonetized, then stored
            cold = (time.perf_counter() - start) * 1000
            use_reference_cache(cache)  # another process: nothing in memory
            start = time.perf_counter()
            build_reference(spec)
            warm = (time.perf_counter() - start) * 1000
            out["startup_ms"][spec] = {"cold": round(cold, 1), "warm": round(warm, 2)}
    finally:
        use_reference_cache(None)
        if proc:
            proc.terminate()
    print(f"{'get':45s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for label, r in out["get"].items():
        print(f"{label:45s} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['max_ms']:8.3f}")
    print(f"\n{'reference':12s} {'cold ms':>9s} {'warm ms':>9s}")
    for spec, r in out["startup_ms"].items():
        print(f"{spec:12s} {r['cold']:9.1f} {r['warm']:9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
