"""Reference reciters: what a trained reciter's recording of each ayah holds, measured once and
kept in the reference cache for comparison with a learner (tempo, rhythm, melody).

For every recording of one ayah, the bundled model aligns it (``analyze``) and we keep: word and
phoneme spans, the pitch contour (20 ms frames, Hz, None where unvoiced), the tempo (phonemes
per second of speech), the reciter's count (one harakah, in seconds) and each madd's length in
harakat, and where the audio lies. Recordings are found by EveryAyah naming (``SSSAAA.mp3``, or
``...-SSSAAA.opus``) or in a manifest. A build is resumable: what the cache holds is skipped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import Cache, cache_key

AUDIO_SUFFIXES = (".mp3", ".opus", ".ogg", ".wav", ".flac", ".m4a")
EVERYAYAH = re.compile(r"(?:^|[^0-9])(\d{3})(\d{3})$")  # ...SSSAAA before the suffix


@dataclass(frozen=True)
class Recording:
    path: Path
    surah: int
    ayah: int


def slug(reciter: str) -> str:
    """The reciter's name as a key part: lower case, letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", reciter.lower()).strip("-") or "reciter"


def find_recordings(audio_dir: str | Path | None = None, *, manifest: str | Path | None = None,
                    reciter: str | None = None) -> list[Recording]:
    """Single-ayah recordings: files named ``SSSAAA.<audio>`` under ``audio_dir``, or the rows of
    ``manifest`` (our manifest.csv columns) whose reciter is ``reciter``."""
    found: dict[tuple[int, int], Recording] = {}
    if manifest is not None:
        root = Path(manifest).parent
        with open(manifest, encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if (reciter is None or row["reciter"] == reciter) and row["ayah"] == row["ayah_end"] \
                        and int(row["ayah"]) > 0 and not row.get("text", "").strip():
                    found.setdefault((int(row["surah"]), int(row["ayah"])),
                                     Recording(root / row["file"], int(row["surah"]), int(row["ayah"])))
    if audio_dir is not None:
        for path in sorted(Path(audio_dir).rglob("*")):
            match = EVERYAYAH.search(path.stem)
            if path.suffix.lower() in AUDIO_SUFFIXES and match and int(match[2]) > 0:
                found.setdefault((int(match[1]), int(match[2])), Recording(path, int(match[1]), int(match[2])))
    return [found[k] for k in sorted(found)]


def features(report, pitch, judged) -> dict:
    """What is kept of one reference recording (``report``: its analysis; ``pitch``: its F0;
    ``judged``: the judgement the report came from, whose context measured the madds)."""
    words = [[w.index, w.start, w.end] for w in report.words if w.start is not None]
    units = [p for w in report.words for p in w.phonemes]
    speech_s = sum(end - start for _, start, end in words)
    harakah_s = report.pace.get("harakah_s")
    ctx = judged.context
    # each madd's length in the reciter's own counts, as the madd validator measures it
    madd = [[unit.index, round(float(ctx.counts(unit.index)), 2)] for unit, _ in ctx.units_with("madd")] if ctx else []
    f0 = [None if not np.isfinite(x) else round(float(x), 1) for x in pitch.f0]
    return {"spec": report.spec, "words": words, "phonemes": [[u.index, u.start, u.end] for u in units],
            "pitch": {"start_s": round(float(pitch.times[0]), 3) if len(pitch) else 0.0, "step_s": 0.02, "f0": f0},
            "tempo": round(sum(len(u.phonemes) for u in units) / speech_s, 3) if speech_s > 0 else None,
            "harakah_s": harakah_s, "madd_harakat": madd, "duration_s": report.duration_s,
            "verdicts": [w.verdict for w in report.words]}


_MODEL = None


def measure(audio: np.ndarray, spec: str, model, settings=None) -> dict | str:
    """A reference recording of ``spec`` (16 kHz samples) measured by ``model``: its entry
    (``features``), or why it cannot be one (it does not sound like ``spec``)."""
    from .analyze import judge
    from .audio.pitch import estimate_pitch
    from .config import AnalyzeSettings
    from .report.build import build_report

    judged, samples, segments = judge(audio, spec, settings or AnalyzeSettings(), model)
    if not judged.matches:
        return f"does not sound like {spec} (PER {judged.content.per:.0%})"
    pitch = estimate_pitch(samples)
    report = build_report(judged, samples=samples, segments=segments, model_name=model.name, profile="beginner",
                          pitch=pitch)
    return features(report, pitch, judged)


def _measure(args: tuple[str, int, int, str | None]) -> tuple[int, int, dict | str]:
    """One recording in a worker process (the model is loaded once per process)."""
    global _MODEL
    from .acoustic.registry import load_model
    from .audio import AudioError, decode_audio
    from .quran import UnknownAyahError

    path, surah, ayah, model_name = args
    if _MODEL is None:
        _MODEL = load_model(model_name, threads=1)
    try:
        entry = measure(decode_audio(path), f"{surah}:{ayah}", _MODEL)
    except (AudioError, UnknownAyahError) as exc:
        return surah, ayah, str(exc)
    return surah, ayah, entry if isinstance(entry, str) else entry | {"audio": str(path)}


def model_key(model) -> str:
    """The key part that ties entries to the model that measured them (``iqrah-small-0.4.0``)."""
    return f"{model.name}-{model.version}" if model.version else model.name


def model_version(model_name: str | None = None) -> str:
    """``model_key`` of a model named as ``load_model`` takes names."""
    from .acoustic.registry import load_model

    return model_key(load_model(model_name, threads=1))


def build_reciter(reciter: str, recordings: list[Recording], cache: Cache, *, model_name: str | None = None,
                  jobs: int = 2, progress: Callable[[Recording, str | None], None] | None = None) -> dict:
    """Measure every recording the cache does not hold yet; ``progress(recording, error)`` after
    each. Returns counts: built, skipped (already there), failed (with the reasons)."""
    version = model_version(model_name)
    keys = {(r.surah, r.ayah): cache_key(version, slug(reciter), r.surah, r.ayah) for r in recordings}
    todo = [r for r in recordings if cache.get(keys[r.surah, r.ayah]) is None]
    counts = {"built": 0, "skipped": len(recordings) - len(todo), "failed": {}}
    by_ayah = {(r.surah, r.ayah): r for r in todo}
    work = [(str(r.path), r.surah, r.ayah, model_name) for r in todo]
    results: Iterator = (map(_measure, work) if jobs <= 1
                         else ProcessPoolExecutor(jobs).map(_measure, work, chunksize=1))
    held = [[s, a] for s, a in keys if (s, a) not in by_ayah]  # in the cache before this build
    try:
        for surah, ayah, result in results:
            recording = by_ayah[surah, ayah]
            if isinstance(result, str):
                counts["failed"][f"{surah}:{ayah}"] = result
            else:
                cache.put(keys[surah, ayah], result | {"reciter": reciter, "model": version})
                counts["built"] += 1
                held.append([surah, ayah])
            if progress:
                progress(recording, result if isinstance(result, str) else None)
    finally:  # an interrupted build lists what it measured so far
        add_to_catalogue(cache, version, reciter, held)
    return counts


def catalogue_key(model: str) -> str:
    """Where the list of reference reciters measured by ``model`` lives (no slug starts with _)."""
    return cache_key(model, "_reciters", 0, 0)


def add_to_catalogue(cache: Cache, model: str, reciter: str, ayahs: list[list[int]]) -> None:
    """Record that ``reciter`` has entries of ``ayahs`` ([surah, ayah] pairs) for ``model``."""
    catalogue = cache.get(catalogue_key(model)) or {}
    known = {tuple(x) for x in catalogue.get(slug(reciter), {}).get("ayahs", [])} | {tuple(x) for x in ayahs}
    if known:
        catalogue[slug(reciter)] = {"name": reciter, "ayahs": sorted([s, a] for s, a in known)}
        cache.put(catalogue_key(model), catalogue)


def catalogue(cache: Cache, model: str) -> dict[str, dict]:
    """{slug: {"name", "ayahs": [[surah, ayah], ...]}} of the reciters measured by ``model``."""
    return cache.get(catalogue_key(model)) or {}


class UnknownReciterError(LookupError):
    """No recording of this ayah by this reciter, measured by this model, in the cache."""


def find_reciter(cache: Cache | None, name: str | None, spec: str, model: str) -> tuple[str, dict] | None:
    """(name, entry) of the reference reciter a recitation of ``spec`` is compared with: None
    without a name, or for a range or a word span (prosody compares one whole ayah, as the
    recordings are per ayah); UnknownReciterError when the cache holds none measured by
    ``model`` (a ``model_key``)."""
    from .quran import parse_spec

    if not name:
        return None
    ayah = parse_spec(spec)
    if ayah.word_start is not None or len(ayah.ayahs) > 1:
        return None
    entry = reciter_entry(cache, name, ayah.surah, ayah.ayah, model) if cache is not None else None
    if entry is None or entry.get("spec") != f"{ayah.surah}:{ayah.ayah}":
        raise UnknownReciterError(f"no recording of {ayah.surah}:{ayah.ayah} by {name!r} here (iqrah reference "
                                  "build --reciter measures one)")
    return name, entry


def reciter_entry(cache: Cache, reciter: str, surah: int, ayah: int, model: str) -> dict | None:
    """What ``build_reciter`` stored for this ayah, measured by ``model`` (a ``model_key``)."""
    return cache.get(cache_key(model, slug(reciter), surah, ayah))


def build_text_references(cache: Cache, settings=None, progress: Callable[[int, int], None] | None = None) -> int:
    """The text reference of every ayah of the Quran into ``cache`` (6,236; the ones it holds are
    read, not built again). Returns how many ayahs."""
    from .config import RecitationSettings
    from .quran import parse_spec
    from .quran.reference import stored_reference
    from .quran.text import SURAH_COUNT, ayah_count

    settings = settings or RecitationSettings()
    n = 0
    for surah in range(1, SURAH_COUNT + 1):
        for ayah in range(1, ayah_count(surah) + 1):
            stored_reference(cache, parse_spec(f"{surah}:{ayah}"), settings)
            n += 1
        if progress:
            progress(surah, n)
    return n
