"""How often a word's live verdict is the final one, when a stream uses two models.

    .venv/bin/python bench/live_vs_final.py [--live iqrah-live] [--final iqrah-small] [--limit N] [--json out.json]

Each dev recording of the manifest is fed to ``StreamingAnalyzer`` in 100 ms chunks (no server,
no real-time pace), with ``--live`` for the live steps and ``--final`` for the final report. For
every word of the final report that was sent live, the first verdict sent is compared with the
final verdict: the share that agree, per reciter group, and which way the others changed. A
learner sees the live colour first; a disagreement is a word recoloured at the end. For the
words recoloured from or to a tajweed error, the rules behind it are counted too (the live
word's violations, or the final report's on that word).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    parser.add_argument("--manifest", type=Path, default=root / "manifest.csv")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--live", default="iqrah-live", help="model of the live steps")
    parser.add_argument("--final", default="iqrah-small", help="model of the final report")
    parser.add_argument("--limit", type=int, default=None, help="only the first N recordings")
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah.acoustic.registry import load_model
    from iqrah.audio import AudioError, decode_audio
    from iqrah.evaluate.manifest import read_manifest
    from iqrah.stream import StreamingAnalyzer

    live_model, final_model = load_model(args.live, threads=1), load_model(args.final, threads=1)
    groups: dict[str, Counter] = defaultdict(Counter)
    changes: Counter = Counter()
    cleared, added = Counter(), Counter()  # rules of tajweed errors the final report took back / added
    t0 = time.time()
    for rec in read_manifest(args.manifest, args.split or None)[: args.limit]:
        try:
            audio = decode_audio(rec.path)
            analyzer = StreamingAnalyzer(rec.spec, model=live_model, final_model=final_model)
            first: dict[int, str] = {}  # the first verdict sent for each word
            live_rules: dict[int, list[str]] = defaultdict(list)  # the violations sent live
            events = [e for i in range(0, audio.size, 1600) for e in analyzer.feed(audio[i : i + 1600])]
            for event in events + analyzer.flush():
                if event.type == "word":
                    first.setdefault(event.data["index"], event.data["verdict"])
                elif event.type == "violation":
                    live_rules[event.data["word_index"]].append(event.data["rule"])
            final = analyzer.finish()[-1].data
        except AudioError as exc:
            print(f"{rec.path.name}: {exc}")
            continue
        tally = groups[rec.reciter]
        tally["files"] += 1
        for word in final["words"]:
            if word["index"] not in first:
                tally["not_sent_live"] += 1
                continue
            tally["words"] += 1
            live = first[word["index"]]
            if live == word["verdict"]:
                tally["agree"] += 1
                continue
            changes[f"{live} -> {word['verdict']}"] += 1
            if live == "tajweed_error":
                cleared.update(live_rules[word["index"]])
            if word["verdict"] == "tajweed_error":
                added.update(v["rule"] for v in final["violations"] if v["word_index"] == word["index"])
    out = {"live": args.live, "final": args.final, "split": args.split, "seconds": round(time.time() - t0, 1),
           "groups": {g: {**t, "agreement": round(t["agree"] / max(t["words"], 1), 4)} for g, t in sorted(groups.items())},
           "changes": dict(changes.most_common()), "rules_taken_back": dict(cleared.most_common()),
           "rules_added": dict(added.most_common())}
    total = sum((Counter(t) for t in groups.values()), Counter())
    out["overall"] = {**total, "agreement": round(total["agree"] / max(total["words"], 1), 4)}
    for name, t in [*out["groups"].items(), ("overall", out["overall"])]:
        print(f"{name}: {t['files']} files, {t['words']} words sent live, live verdict = final verdict for "
              f"{t['agreement'] * 100:.1f} % ({t.get('not_sent_live', 0)} words only in the final report)")
    print("changed:", ", ".join(f"{k} {v}" for k, v in out["changes"].items()) or "none")
    print("tajweed errors taken back, by rule:", ", ".join(f"{k} {v}" for k, v in cleared.most_common()) or "none")
    print("tajweed errors added, by rule:", ", ".join(f"{k} {v}" for k, v in added.most_common()) or "none")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
