"""The ``iqrah`` command line: a thin layer over the library; errors become one line and exit 2."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__

app = typer.Typer(
    name="iqrah",
    help="Listens to Quran recitation and says what was right and wrong.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

RULE_STYLES = {"madd": "bold blue", "ghunnah": "bold green", "idgham": "bold magenta",
               "qalqalah": "bold red", "sakt": "bold yellow"}


def fail(message: str) -> None:
    """Print a one-line error and exit with status 2 (bad input), as every command does."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        console.print(f"iqrah {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None):
    """Listens to Quran recitation and says what was right and wrong."""


@app.command()
def reference(
    spec: Annotated[str, typer.Argument(help="SURAH:AYAH, SURAH:AYAH-AYAH or SURAH:AYAH:WORD[-WORD]; or "
                                              "'build' to fill the reference cache (see --reciter, --all)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the Reference as JSON.")] = False,
    basmala: Annotated[bool, typer.Option(help="Prepend the basmala to an ayah 1 (not surahs 1, 9).")] = False,
    madd_monfasel: Annotated[int, typer.Option(help="Separated madd length in harakat (2-5).")] = 4,
    madd_mottasel: Annotated[int, typer.Option(help="Connected madd length in harakat (4-6).")] = 4,
    madd_aared: Annotated[int, typer.Option(help="Madd before a stop, in harakat (2, 4, 6).")] = 4,
    reciter: Annotated[Optional[str], typer.Option(help="build: the reference reciter's name.")] = None,
    audio_dir: Annotated[Optional[Path], typer.Option(help="build: a folder of per-ayah recordings "
                                                              "named SSSAAA.mp3 (EveryAyah).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="build: a manifest.csv listing the reciter's "
                                                             "recordings instead.")] = None,
    build_all: Annotated[bool, typer.Option("--all", help="build: the text references of all 6,236 ayahs.")] = False,
    cache: Annotated[Optional[str], typer.Option(help="build: sqlite:///file, redis://host:port/db, "
                                                        "redis-cluster://host:port (default: IQRAH_CACHE, "
                                                        "else a SQLite file under the user's data folder).")] = None,
    jobs: Annotated[int, typer.Option(help="build: processes measuring recordings (one per core).")] = 2,
):
    """What an ayah should sound like: words, phonemes and the tajweed rules they carry.

    `iqrah reference build --reciter NAME --audio-dir DIR` measures a reference reciter's recordings
    (word and phoneme spans, pitch, tempo, madd lengths) into the reference cache; resumable.
    """
    from .config import RecitationSettings
    from .quran import UnknownAyahError, build_reference

    try:
        settings = RecitationSettings.from_madd(madd_monfasel, madd_mottasel, madd_aared)
    except ValueError as exc:
        fail(str(exc))
    if spec == "build":
        _build_references(reciter, audio_dir, manifest, build_all, cache, jobs, settings)
        return
    try:
        ref = build_reference(spec, settings, include_basmala=basmala)
    except UnknownAyahError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(ref.to_json() + "\n")
        return
    table = Table(title=f"{ref.spec}  ({len(ref.words)} words, {len(ref.units)} phoneme units)",
                  show_lines=False)
    for column in ("ayah", "word", "text", "phonemes", "rules"):
        table.add_column(column, no_wrap=column != "rules")
    for word in ref.words:
        rules = Text()
        for unit in ref.word_units(word.index):
            for rule in unit.rules:
                label = rule.tag + (f"({rule.harakat})" if rule.harakat else "")
                rules.append(f"{label} ", style=RULE_STYLES.get(rule.family, ""))
                rules.append(f"on {unit.phonemes}  ", style="dim")
        table.add_row(str(word.ayah), str(word.number), word.text, word.phonemes, rules)
    console.print(table)



def _build_references(reciter, audio_dir, manifest, build_all, cache_url, jobs, settings) -> None:
    """``iqrah reference build``: a reference reciter's recordings, or every ayah's text, into the cache."""
    from rich.progress import Progress

    from .cache import open_cache
    from .reciters import build_reciter, build_text_references, find_recordings

    if not build_all and not reciter:
        fail("reference build needs --reciter NAME (with --audio-dir or --manifest) or --all")
    if reciter and audio_dir is None and manifest is None:
        fail("reference build --reciter needs --audio-dir DIR (files named SSSAAA.mp3) or --manifest CSV")
    try:
        store = open_cache(cache_url)
    except Exception as exc:  # noqa: BLE001 - a bad address or an unreachable Redis
        fail(f"cannot open the cache: {exc}")
    with Progress(console=err_console, transient=False) as progress:
        if build_all:
            task = progress.add_task("text references", total=114)
            n = build_text_references(store, settings, lambda surah, n: progress.update(task, completed=surah))
            console.print(f"text references: {n} ayahs in the {store.kind} cache")
        if reciter:
            if audio_dir is not None and not audio_dir.is_dir():
                fail(f"{audio_dir} is not a folder")
            recordings = find_recordings(audio_dir, manifest=manifest, reciter=reciter if manifest else None)
            if not recordings:
                fail("no single-ayah recordings found (names like 001002.mp3, or manifest rows of this reciter)")
            task = progress.add_task(reciter, total=len(recordings))
            counts = build_reciter(reciter, recordings, store, jobs=jobs,
                                   progress=lambda rec, error: progress.advance(task))
            progress.update(task, completed=len(recordings))
            console.print(f"{reciter}: {counts['built']} built, {counts['skipped']} already in the "
                          f"{store.kind} cache, {len(counts['failed'])} failed")
            for ayah, reason in sorted(counts["failed"].items()):
                err_console.print(f"  {ayah}: {reason}", highlight=False)

@app.command()
def audio(
    file: Annotated[Path, typer.Argument(help="A recording: wav, flac, mp3, ogg/opus, webm, m4a.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    max_minutes: Annotated[float, typer.Option(help="Refuse recordings longer than this.")] = 10.0,
):
    """Decode a recording to 16 kHz mono and list its speech segments (Silero VAD)."""
    from .audio import AudioError, AudioLimits, decode_audio, speech_segments

    try:
        samples = decode_audio(file, limits=AudioLimits(max_seconds=max_minutes * 60))
    except AudioError as exc:
        fail(str(exc))
    segments = speech_segments(samples)
    result = {
        "file": str(file),
        "duration_s": round(samples.size / 16000, 3),
        "peak_dbfs": round(20 * float(__import__("numpy").log10(max(abs(samples).max(), 1e-9))), 1),
        "speech": [[round(s.start_s, 3), round(s.end_s, 3)] for s in segments],
    }
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    console.print(f"{file}: {result['duration_s']} s at 16 kHz, peak {result['peak_dbfs']} dBFS")
    for start, end in result["speech"]:
        console.print(f"  speech {start:8.2f} - {end:8.2f} s")


VERDICT_STYLES = {"correct": "bold green", "tajweed_error": "bold yellow", "content_error": "bold red",
                  "missing": "bold red strike", "not_assessed": "dim"}


@app.command()
def analyze(
    file: Annotated[Path, typer.Argument(help="A recording: wav, flac, mp3, ogg/opus, webm, m4a.")],
    ayah: Annotated[str, typer.Option("--ayah", help="What was recited: SURAH:AYAH[-AYAH] or SURAH:AYAH:WORD[-WORD].")],
    model: Annotated[Optional[str], typer.Option(help="Acoustic model: iqrah-small or a .onnx path.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    profile: Annotated[str, typer.Option(help="Scoring profile: beginner or advanced.")] = "beginner",
    gate_per: Annotated[Optional[float], typer.Option(help="Phoneme error rate above which the recording "
                        "is taken not to be this ayah (default: the model's).")] = None,
    madd_monfasel: Annotated[int, typer.Option(help="Separated madd length in harakat (2-5).")] = 4,
    madd_mottasel: Annotated[int, typer.Option(help="Connected madd length in harakat (4-6).")] = 4,
    madd_aared: Annotated[int, typer.Option(help="Madd before a stop, in harakat (2, 4, 6).")] = 4,
    max_minutes: Annotated[float, typer.Option(help="Refuse recordings longer than this.")] = 10.0,
):
    """Assess a recitation: words right and wrong, tajweed violations, scores and feedback."""
    from pydantic import ValidationError

    from .acoustic.registry import ModelError, load_model
    from .analyze import AnalyzeSettings, analyze as run_analysis
    from .audio import AudioError, AudioLimits, decode_audio
    from .config import RecitationSettings
    from .quran import UnknownAyahError, parse_spec
    from .report.scoring import PROFILES

    if profile not in PROFILES:
        fail(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    try:
        parse_spec(ayah)
        recitation = RecitationSettings(madd_monfasel=madd_monfasel, madd_mottasel=madd_mottasel,
                                        madd_mottasel_waqf=madd_mottasel, madd_aared=madd_aared)
        recitation.to_moshaf()
        settings = AnalyzeSettings(recitation=recitation, profile=profile, gate_per=gate_per,
                                   limits=AudioLimits(max_seconds=max_minutes * 60))
        acoustic = load_model(model)
        samples = decode_audio(file, limits=settings.limits)
        if samples.size > 30 * 16000 and not as_json:
            with err_console.status(f"analysing {samples.size / 16000:.0f} s of audio..."):
                report = run_analysis(samples, ayah, settings, acoustic)
        else:
            report = run_analysis(samples, ayah, settings, acoustic)
    except (UnknownAyahError, AudioError, ModelError, FileNotFoundError) as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail("invalid recitation settings: " + "; ".join(e["msg"] for e in exc.errors()))
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        return
    _print_report(report)


def _print_report(report) -> None:
    text = Text()
    for word in report.words:
        text.append(word.text, style=VERDICT_STYLES[word.verdict])
        text.append(" ")
    console.print(f"[bold]{report.spec}[/]  {report.duration_s:.1f} s, model {report.model}, "
                  f"free-decoding PER {report.gate.per * 100:.1f} %")
    console.print(text, justify="right")
    if report.gate.path == "content_mismatch":
        console.print(f"[bold red]This does not sound like {report.spec}[/] (PER "
                      f"{report.gate.per * 100:.0f} % > {report.gate.threshold * 100:.0f} %): word errors only.")
    for error in report.content_errors:
        where = f"{error.time_range[0]:6.2f} s" if error.time_range else "        "
        console.print(f"  {where}  [red]{error.kind:<11}[/] {error.feedback.en}")
    for v in report.violations:
        console.print(f"  {v.time_range[0]:6.2f} s  [yellow]{v.rule:<24}[/] {v.feedback.en} "
                      f"[dim](confidence {v.confidence:.2f}, {v.severity})[/]")
    s = report.scores
    console.print(f"scores ({s.profile}): overall [bold]{s.overall:.0f}[/], content {s.content:.0f}, "
                  f"pronunciation {s.pronunciation:.0f}, tajweed {s.tajweed:.0f}")
    console.print("[dim]" + ", ".join(f"{k} {v:.0f} ms" for k, v in report.timings_ms.items()) + "[/]")


def _eval_inputs(model: str | None, manifest: Path, split: str, limit: int | None, reciter: str | None,
                 threads: int = 0):
    """The model and the number of recordings an eval command will go through, or a clean exit."""
    from .acoustic.registry import ModelError, load_model
    from .evaluate.manifest import read_manifest

    try:
        return load_model(model, threads=threads), len(read_manifest(manifest, split or None, reciter)[:limit])
    except (ModelError, FileNotFoundError) as exc:
        fail(str(exc))


@contextmanager
def _progress_bar(description: str, total: int):
    """A progress bar with ETA on stderr; yields a callback to call once per item."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda _item: bar.advance(task)


eval_app = typer.Typer(help="Measure iqrah on labelled recordings.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("accuracy")
def eval_accuracy(
    manifest: Annotated[Path, typer.Option(help="manifest.csv of labelled recordings (paths relative to it).")],
    split: Annotated[str, typer.Option(help="Rows of this split only ('' for all).")] = "dev",
    model: Annotated[Optional[str], typer.Option(help="Acoustic model: iqrah-small or a .onnx path.")] = None,
    timings: Annotated[Optional[Path], typer.Option(help="Reference word timings JSON "
                       "(default: alignments/alafasy-word-timings.json beside the manifest).")] = None,
    timings_reciter: Annotated[str, typer.Option(help="Timings apply to reciters whose name contains this.")] = "alafasy",
    limit: Annotated[Optional[int], typer.Option(help="Only the first N recordings.")] = None,
    reciter: Annotated[Optional[str], typer.Option(help="Only reciters whose name contains this.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full result here.")] = None,
    threads: Annotated[int, typer.Option(help="Model threads; the real-time factor target is for one "
                                               "(0: one per core).")] = 1,
):
    """Phoneme error rate, word-boundary error and speed of the acoustic model, per reciter group
    and pooled per kind of reciter (the manifest's kind column: professional, non-expert)."""
    from .evaluate.accuracy import evaluate_accuracy

    acoustic, total = _eval_inputs(model, manifest, split, limit, reciter, threads)
    with _progress_bar("evaluating", total) as advance:
        result = evaluate_accuracy(acoustic, manifest, split=split or None, timings_path=timings,
                                   timings_reciter=timings_reciter, limit=limit, progress=advance,
                                   model_card=acoustic.card, reciter=reciter)
    table = Table(title=f"accuracy on {manifest} ({split or 'all'})")
    for column in ("group", "files", "PER", "RTF", "word MAE", "<=50 ms", "<=100 ms"):
        table.add_column(column, justify="right" if column != "group" else "left")

    def row(name, stats):
        pct = lambda v: "" if v is None else f"{v * 100:.1f} %"  # noqa: E731
        mae = stats.get("word_mae_ms")
        table.add_row(name, str(stats.get("files", "")), pct(stats.get("per")),
                      "" if stats.get("rtf") is None else f"{stats['rtf']:.3f}",
                      "" if mae is None else f"{mae:.0f} ms", pct(stats.get("within_50ms")),
                      pct(stats.get("within_100ms")))

    for name, stats in result["groups"].items():
        row(name, stats)
    if len(result["kinds"]) > 1:  # professional, non-expert... (the manifest's kind column)
        for name, stats in result["kinds"].items():
            row(f"all {name}", stats)
    row("overall", result["overall"])
    if result["baseline"]:
        row("baseline (proportional)", result["baseline"])
    console.print(table)
    intervals = [f"{name} {s['per_ci95'][0] * 100:.1f}-{s['per_ci95'][1] * 100:.1f} %"
                 for name, s in result["groups"].items() if s.get("per_ci95")]
    if intervals:
        console.print("PER, 95 % interval with the files drawn again with replacement (how far it "
                      "could move on other recordings of the kind): " + "; ".join(intervals))
    spans = result["overall"].get("sound_spans")
    if result.get("boundary_convention") == "segmentation" and spans:
        console.print("word boundaries compared as a segmentation: the reference's words follow on "
                      "without gaps, so a pause counts with the word before it; as the spans where "
                      f"words sound: MAE {spans['word_mae_ms']:.0f} ms, {spans['within_50ms'] * 100:.1f} % "
                      f"within 50 ms, {spans['within_100ms'] * 100:.1f} % within 100 ms")
    if json_out:
        json_out.write_text(json.dumps(result, ensure_ascii=False, indent=2))
        console.print(f"wrote {json_out}")


@eval_app.command("mutations")
def eval_mutations(
    manifest: Annotated[Path, typer.Option(help="manifest.csv of correct recitations (paths relative to it).")],
    split: Annotated[str, typer.Option(help="Rows of this split only ('' for all).")] = "dev",
    model: Annotated[Optional[str], typer.Option(help="Acoustic model: iqrah-small or a .onnx path.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for choosing what to mutate.")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N recordings.")] = None,
    reciter: Annotated[Optional[str], typer.Option(help="Only reciters whose name contains this.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full result here.")] = None,
):
    """Plant known errors in correct recitations and measure how many analyze finds."""
    from .evaluate.mutations import evaluate_mutations

    acoustic, total = _eval_inputs(model, manifest, split, limit, reciter)
    with _progress_bar("mutating and analysing", total) as advance:
        result = evaluate_mutations(acoustic, manifest, split=split or None, seed=seed, limit=limit,
                                    progress=advance, reciter=reciter)
    table = Table(title=f"planted errors in {manifest} ({split or 'all'}), seed {seed}")
    for column in ("error", "planted", "found", "false pos.", "precision", "recall", "F1"):
        table.add_column(column, justify="right" if column != "error" else "left")
    rows = list(result["types"].items()) + [("all word errors", result["word_errors"]),
                                            ("all madd errors", result["madd_errors"])]
    for name, m in rows:
        table.add_row(name, str(m["tp"] + m["fn"]), str(m["tp"]), str(m["fp"]), f"{m['precision']:.2f}",
                      f"{m['recall']:.2f}", f"{m['f1']:.2f}")
    console.print(table)
    alarms = Table(title="told to a reciter who recited correctly: the untouched recordings "
                         "(crowd recordings may hold real mistakes)")
    alarms.add_column("group", no_wrap=True, max_width=28)
    for column in ("files", "ayahs", "content errors / ayah", "violations / ayah", "told not this ayah"):
        alarms.add_column(column, justify="right")
    tallies = list(result["false_alarms_by_group"].items())
    tallies += [(f"all {kind}", fa) for kind, fa in result["false_alarms"].items()]
    for name, fa in tallies:
        alarms.add_row(name, str(fa["files"]), str(fa["ayahs"]), f"{fa['content_errors_per_ayah']:.2f}",
                       f"{fa['violations_per_ayah']:.2f}", f"{fa['not_this_ayah_share']:.0%}")
    console.print(alarms)
    if json_out:
        json_out.write_text(json.dumps(result, ensure_ascii=False, indent=2))
        console.print(f"wrote {json_out}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes (share sessions through Redis).")] = 1,
    model: Annotated[Optional[str], typer.Option(help="Acoustic model of uploads and of a stream's final "
                                                      "report: iqrah-small or a .onnx path.")] = None,
    live_model: Annotated[Optional[str], typer.Option(help="Acoustic model of a stream's live verdicts "
                                                           "(default: iqrah-live beside the bundled "
                                                           "iqrah-small, else --model).")] = None,
    max_connections: Annotated[int, typer.Option(help="Connections per process; the next gets close 1013.")] = 100,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS, which browsers "
                                                           "need for the microphone on another device.")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="The private key (PEM) of --ssl-certfile.")] = None,
    redis_url: Annotated[Optional[str], typer.Option(help="Sessions in Redis, shared by servers "
                                                          "[IQRAH_REDIS_URL].")] = None,
    cache: Annotated[Optional[str], typer.Option(help="Reference cache: sqlite:///file, redis://..., "
                                                      "redis-cluster://..., none [IQRAH_CACHE].")] = None,
    audio_dir: Annotated[Optional[Path], typer.Option(help="Reference reciters' recordings for /audio "
                                                           "(<dir>/<reciter>/SSSAAA.mp3) [IQRAH_AUDIO_DIR].")] = None,
    inference_threads: Annotated[Optional[int], typer.Option(help="Model calls at once (default: one per core) "
                                                                  "[IQRAH_INFERENCE_THREADS].")] = None,
    report_threads: Annotated[Optional[int], typer.Option(help="Final reports at once [IQRAH_REPORT_THREADS].")] = None,
    upload_threads: Annotated[Optional[int], typer.Option(help="Uploads analysed at once [IQRAH_UPLOAD_THREADS].")] = None,
    max_pending: Annotated[Optional[int], typer.Option(help="Connections without start yet [IQRAH_MAX_PENDING].")] = None,
    start_timeout: Annotated[Optional[float], typer.Option(help="Seconds to send start [IQRAH_START_TIMEOUT].")] = None,
    idle_timeout: Annotated[Optional[float], typer.Option(help="Seconds a stream may send nothing "
                                                               "[IQRAH_IDLE_TIMEOUT].")] = None,
    audio_pace: Annotated[Optional[float], typer.Option(help="Audio accepted at most this x real time "
                                                             "[IQRAH_AUDIO_PACE].")] = None,
    audio_burst: Annotated[Optional[float], typer.Option(help="... beyond this many seconds at once "
                                                              "[IQRAH_AUDIO_BURST].")] = None,
    header_timeout: Annotated[Optional[float], typer.Option(help="Seconds for a request's headers "
                                                                 "[IQRAH_HEADER_TIMEOUT].")] = None,
    body_timeout: Annotated[Optional[float], typer.Option(help="Longest pause inside a body "
                                                               "[IQRAH_BODY_TIMEOUT].")] = None,
    keep_alive: Annotated[Optional[int], typer.Option(help="Seconds an idle HTTP connection stays "
                                                           "[IQRAH_KEEP_ALIVE].")] = None,
    allowed_origins: Annotated[Optional[str], typer.Option(help="Other sites' origins whose pages may stream, "
                                                                "comma-separated [IQRAH_ALLOWED_ORIGINS].")] = None,
    client_connections: Annotated[Optional[int], typer.Option(help="Open connections per client "
                                                                   "[IQRAH_CLIENT_CONNECTIONS].")] = None,
    client_connects_per_minute: Annotated[Optional[int], typer.Option(
        help="Connections a minute per client [IQRAH_CLIENT_CONNECTS_PER_MINUTE].")] = None,
    client_uploads_per_minute: Annotated[Optional[int], typer.Option(
        help="Uploads a minute per client [IQRAH_CLIENT_UPLOADS_PER_MINUTE].")] = None,
    client_audio_per_minute: Annotated[Optional[int], typer.Option(
        help="Seconds of audio a minute per client [IQRAH_CLIENT_AUDIO_PER_MINUTE].")] = None,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-For from --forwarded-allow-ips (behind "
                                                     "a proxy: each learner is a client, not the proxy).")] = True,
    forwarded_allow_ips: Annotated[Optional[str], typer.Option(help="Proxy addresses whose X-Forwarded-* headers "
                                                                    "are trusted (default: FORWARDED_ALLOW_IPS, "
                                                                    "else 127.0.0.1).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
):
    """Start the streaming server: /ws/stream, POST /api/analyze, /health, /ready, /metrics, /audio.

    Every setting is also an IQRAH_* environment variable (shown in brackets; API keys only as
    IQRAH_API_KEYS, so that they never show in a process list). `iqrah info` prints them all.
    """
    import logging
    import os

    import uvicorn

    from .server.config import ServerConfig
    from .server.http_limits import uvicorn_options

    flags = {"IQRAH_REDIS_URL": redis_url, "IQRAH_CACHE": cache, "IQRAH_AUDIO_DIR": audio_dir,
             "IQRAH_INFERENCE_THREADS": inference_threads, "IQRAH_REPORT_THREADS": report_threads,
             "IQRAH_UPLOAD_THREADS": upload_threads, "IQRAH_MAX_PENDING": max_pending,
             "IQRAH_START_TIMEOUT": start_timeout, "IQRAH_IDLE_TIMEOUT": idle_timeout,
             "IQRAH_AUDIO_PACE": audio_pace, "IQRAH_AUDIO_BURST": audio_burst, "IQRAH_HEADER_TIMEOUT": header_timeout,
             "IQRAH_BODY_TIMEOUT": body_timeout, "IQRAH_KEEP_ALIVE": keep_alive,
             "IQRAH_ALLOWED_ORIGINS": allowed_origins, "IQRAH_CLIENT_CONNECTIONS": client_connections,
             "IQRAH_CLIENT_CONNECTS_PER_MINUTE": client_connects_per_minute,
             "IQRAH_CLIENT_UPLOADS_PER_MINUTE": client_uploads_per_minute,
             "IQRAH_CLIENT_AUDIO_PER_MINUTE": client_audio_per_minute}
    for name, value in flags.items():
        if value is not None:
            os.environ[name] = str(value)
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(f"--log-level {log_level!r}: use debug, info, warning or error")
    # one line per event, key=value, for log collectors; never audio, never keys
    logging.basicConfig(level=level, format="time=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("give both --ssl-certfile and --ssl-keyfile, or neither")
    tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)} if ssl_certfile else {}
    if not tls and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"Note: browsers allow the microphone only on HTTPS pages or on localhost. Other devices can "
                   f"open http://{host}:{port} and upload recordings, but not record: start iqrah serve with "
                   "--ssl-certfile/--ssl-keyfile, or put it behind a reverse proxy with TLS (docs/web.md).",
                   err=True)

    os.environ["IQRAH_MAX_CONNECTIONS"] = str(max_connections)
    if model:
        os.environ["IQRAH_MODEL"] = model
    if live_model:
        os.environ["IQRAH_LIVE_MODEL"] = live_model
    options = uvicorn_options(ServerConfig()) | tls | {"log_level": log_level.lower(), "proxy_headers": proxy_headers}
    if forwarded_allow_ips:
        options["forwarded_allow_ips"] = forwarded_allow_ips
    if workers > 1:
        uvicorn.run("iqrah.server.app:create_app", factory=True, host=host, port=port, workers=workers, **options)
        return
    from .server.app import create_app

    application = create_app()

    class DrainingServer(uvicorn.Server):
        """On SIGTERM/SIGINT, first let every stream save itself and tell its client to resume."""

        def handle_exit(self, sig, frame):
            application.state.iqrah.draining.set()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None):
            # uvicorn closes every WebSocket with 1012 as its shutdown begins: a stream still
            # saving itself would lose the shutting_down message that tells its client to resume.
            # Wait (at most the graceful timeout) until every connection has drained itself.
            import asyncio
            import time

            state = application.state.iqrah
            deadline = time.monotonic() + (self.config.timeout_graceful_shutdown or 10)
            while state.active and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await super().shutdown(sockets)

    config = uvicorn.Config(application, host=host, port=port, **options)
    DrainingServer(config).run()


model_app = typer.Typer(help="Export, quantize and validate acoustic models (muaalem backend).",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("export")
def model_export(
    source: Annotated[str, typer.Argument(help="muaalem checkpoint: a folder or a hub id in the HF cache")]
    = "obadx/muaalem-model-v3_2",
    out: Annotated[Path, typer.Option(help="Folder for muaalem.onnx and its card.")] = Path("models/muaalem"),
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
):
    """Export a muaalem checkpoint to ONNX (dynamic batch and time; external data above 2 GB)."""
    try:
        from .acoustic.export import export_muaalem

        path = export_muaalem(source.removeprefix("muaalem:"), out, opset=opset)
    except ImportError as exc:
        fail(f"exporting needs the [muaalem] extra and onnx ({exc.name} is missing)")
    except FileNotFoundError as exc:
        fail(str(exc))
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB) and its card")


@model_app.command("quantize")
def model_quantize(
    onnx_file: Annotated[Path, typer.Argument(help="An exported FP32 .onnx file.")],
    mode: Annotated[str, typer.Option(help="dynamic (INT8 MatMul/Gemm), static (INT8, calibrated) or fp16.")]
    = "dynamic",
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: beside the input).")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="Calibration recordings for static mode.")] = None,
    calibration_files: Annotated[int, typer.Option(help="How many train-split files calibrate static mode.")] = 100,
):
    """Make an INT8 (dynamic or static) or FP16 variant of an exported model."""
    from .acoustic import quantize as q

    if not onnx_file.is_file():
        fail(f"no ONNX file at {onnx_file}")
    if mode not in ("dynamic", "static", "fp16"):
        fail(f"unknown mode {mode!r}: use dynamic, static or fp16")
    out = out or onnx_file.with_name(f"{onnx_file.stem}-{'int8' if mode != 'fp16' else 'fp16'}"
                                     f"{'-static' if mode == 'static' else ''}.onnx")
    if mode == "dynamic":
        q.quantize_dynamic_int8(onnx_file, out)
    elif mode == "fp16":
        q.convert_fp16(onnx_file, out)
    else:
        if manifest is None:
            fail("static quantization needs --manifest (train-split recordings for calibration)")
        from .acoustic.registry import load_model
        from .audio import decode_audio
        from .evaluate.manifest import read_manifest

        from .acoustic.muaalem import MuaalemOnnxModel

        model = load_model(str(onnx_file))
        if not isinstance(model, MuaalemOnnxModel):
            fail("static quantization is for muaalem exports (their inputs are features)")
        calibration = []
        for rec in read_manifest(manifest, "train")[:calibration_files]:
            feats, mask = model.features(decode_audio(rec.path)[: 20 * 16000])
            calibration.append({"input_features": feats, "attention_mask": mask})
        q.quantize_static_int8(onnx_file, out, calibration)
    q.copy_card(onnx_file, out, mode)
    console.print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, from {onnx_file.stat().st_size / 2**20:.1f} MB)")


@model_app.command("validate")
def model_validate(
    candidate: Annotated[str, typer.Argument(help="The converted model: an .onnx path.")],
    reference: Annotated[str, typer.Option(help="The model it was made from (e.g. muaalem:<folder> or FP32 .onnx).")],
    manifest: Annotated[Path, typer.Option(help="manifest.csv of labelled recordings.")],
    split: Annotated[str, typer.Option(help="Rows of this split only.")] = "dev",
    limit: Annotated[Optional[int], typer.Option(help="Only the first N recordings.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result here.")] = None,
):
    """PER and per-sifa error before and after, output agreement and size; fails (exit 1) if PER
    rises by more than 2 percentage points."""
    from .acoustic.registry import ModelError, load_model
    from .evaluate.validate import validate

    try:
        ref_model, cand_model = load_model(reference), load_model(candidate)
    except (ModelError, FileNotFoundError) as exc:
        fail(str(exc))
    sizes = {name: Path(p).stat().st_size for name, p in (("reference", reference), ("candidate", candidate))
             if Path(p).is_file()}
    result = validate(ref_model, cand_model, manifest, split=split or None, limit=limit, sizes=sizes)
    console.print_json(json.dumps(result))
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
    if not result["passed"]:
        err_console.print(f"[bold red]PER rose by {result['per_rise_pp']} pp (limit 2 pp)[/]")
        raise typer.Exit(1)


TRAIN_STEPS = {"prep": "prep", "onsets": "onsets", "fit": "loop", "average": "average", "delay": "delay",
               "export": "export", "evaluate": "evaluate"}


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def train(
    ctx: typer.Context,
    step: Annotated[Optional[str], typer.Argument(help="prep, onsets, fit, average, delay, export or evaluate")] = None,
):
    """Train the bundled acoustic model with the recipe in train/ (needs the \\[train] extra).

    Steps: prep (targets and audio cache), onsets (where a model hears each phoneme begin, for
    the speech augmentation), fit (train), average (mean of checkpoints' weights), delay (how late
    a model places word boundaries against the bundled one, on train), export (ONNX, INT8, card), evaluate (dev PER of a checkpoint). Options after STEP go to it: `iqrah train fit --help`.
    """
    import importlib

    if step in (None, "--help", "-h"):
        console.print("usage: iqrah train STEP [OPTIONS]\n  steps: prep (targets and audio cache), "
                      "onsets (phoneme onsets for --augment speech), fit (train), average (mean of checkpoints), "
                      "delay (how late a model places boundaries, on train), export (ONNX, INT8, card), "
                      "evaluate (dev PER of a checkpoint)\n"
                      "  options after STEP go to it: iqrah train fit --help   (docs/model.md)", highlight=False)
        raise typer.Exit(0)
    if step not in TRAIN_STEPS:
        fail(f"unknown training step {step!r}: use one of {', '.join(TRAIN_STEPS)}")
    recipe = Path(__file__).resolve().parents[2] / "train"
    if not (recipe / "iqrah_train").is_dir():
        fail("the training recipe lives in the repository's train/ folder: run this from a checkout")
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("training needs torch: pip install -e '.[train]'")
    if str(recipe) not in sys.path:
        sys.path.insert(0, str(recipe))
    importlib.import_module(f"iqrah_train.{TRAIN_STEPS[step]}").main(ctx.args)


@app.command()
def info():
    """Check that the engine's parts load here, and say what is installed."""
    import time

    import onnxruntime

    from .acoustic import phoneme_vocab
    from .audio import SileroVad
    from .quran import build_reference

    table = Table(title=f"iqrah {__version__}", show_header=False)
    start = time.perf_counter()
    ref = build_reference("1:2")
    table.add_row("reference", f"quran-transcript ok: 1:2 -> {ref.phonemes} "
                  f"({(time.perf_counter() - start) * 1000:.0f} ms)")
    start = time.perf_counter()
    SileroVad()
    table.add_row("vad", f"Silero VAD v6 on onnxruntime {onnxruntime.__version__} "
                  f"({(time.perf_counter() - start) * 1000:.0f} ms to load)")
    table.add_row("vocabulary", f"{len(phoneme_vocab())} tokens (blank + phonemes)")
    from .acoustic.registry import live_model_name, load_model

    for role, name in (("acoustic model", None), ("live model", live_model_name(None))):
        if role == "live model" and name is None:
            table.add_row(role, "the acoustic model (no bundled live model)")
            continue
        try:
            model = load_model(name)
            card = model.card
            table.add_row(role, f"{card.get('name', 'bundled')} {card.get('version', '')}: "
                          f"{card.get('parameters') or card.get('architecture', {}).get('parameters', '?'):,} "
                          f"parameters, {model.frame_seconds * 1000:.0f} ms frames")
        except (FileNotFoundError, ValueError) as exc:
            table.add_row(role, f"[red]not available: {exc}[/]")
    console.print(table)
    console.print(_server_settings())


def _server_settings() -> Table:
    """``iqrah serve``'s settings as this environment sets them (API keys counted, never shown)."""
    from dataclasses import fields

    from .server.config import ServerConfig

    config = ServerConfig()
    table = Table(title="server settings (iqrah serve; IQRAH_* variables)")
    for column in ("setting", "value"):
        table.add_column(column)
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "api_keys":
            value = f"{len(value)} key(s)" if value else "none (open)"
        table.add_row(f.name, str(value if value not in (None, "", ()) else "-"))
    return table


if __name__ == "__main__":
    app()
