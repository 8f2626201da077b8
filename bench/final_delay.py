"""How long a reciter waits for the final report after they stop: ``StreamingAnalyzer.finish``.

    .venv/bin/python bench/final_delay.py [--repeat 3] [--json out.json]

Each recording is fed to a stream in 100 ms chunks (live steps by iqrah-live, the final report by
iqrah-small, as the server does; no server, no real-time pace), the stream is flushed as on
``stop``, then ``finish()`` is timed: the final report over the whole recording. Between feeds
the stream runs the final model on the windows the audio has completed (``prepare_final``), as
the server does on spare cores; the same is timed without that too. Medians over the repeats,
one thread per model call as the server's report pool runs them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

FILES = [("dev/offline-tarteel-test-corpus-v3-ea-alafasy-040013.opus", "40:13"),  # 16.6 s
         ("dev/offline-tarteel-test-corpus-002255.opus", "2:255")]  # 51.9 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--root", type=Path, default=root, help="the recitations folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah.acoustic.registry import load_model
    from iqrah.audio import SAMPLE_RATE, decode_audio
    from iqrah.stream import StreamingAnalyzer

    live, final = load_model("iqrah-live", threads=1), load_model("iqrah-small", threads=1)
    results = []
    for name, spec in FILES:
        audio = decode_audio(args.root / name)
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeat):
            for prepare in (True, False):
                stream = StreamingAnalyzer(spec, model=live, final_model=final)
                for i in range(0, audio.size, SAMPLE_RATE // 10):
                    stream.feed(audio[i:i + SAMPLE_RATE // 10])
                    while prepare and stream.final_window_due:
                        stream.prepare_final()
                stream.flush()
                started = time.perf_counter()
                stream.finish()
                seconds[prepare].append(time.perf_counter() - started)
        result = {"file": name, "spec": spec, "audio_s": round(audio.size / SAMPLE_RATE, 1),
                  "finish_ms": [round(s * 1000) for s in seconds[True]],
                  "median_ms": round(statistics.median(seconds[True]) * 1000),
                  "without_windows_run_ahead_ms": round(statistics.median(seconds[False]) * 1000)}
        results.append(result)
        print(f"{spec} ({result['audio_s']} s): final report {result['median_ms']} ms after stop "
              f"(runs {result['finish_ms']}; {result['without_windows_run_ahead_ms']} ms without the "
              "windows run ahead)")
    if args.json:
        Path(args.json).write_text(json.dumps({"files": results}, indent=1))


if __name__ == "__main__":
    main()
