"""``iqrah eval mutations``: does ``analyze`` find errors we plant in real, correct recitations?

From each recording with reference word timings (Alafasy, dev), seeded copies are made with one
known error each: a word deleted, repeated, or replaced by a word spliced from another ayah
(word boundaries from the timings); a madd of 4-6 counts squeezed to about 2, a natural madd
stretched to about 4, a ghunnah cut to a third (the unit's span from our own alignment of the
untouched recording, WSOLA time-scaling). Each copy is analysed like a user's upload. Per error
type: precision, recall and F1 (a detection must name the right word, or the right phoneme unit
for tajweed errors; false positives are same-type reports elsewhere in the mutated copies and in
the untouched professional recordings); and false alarms per ayah on the untouched recordings:
what a reciter who recited correctly is told, per reciter group (as ``eval accuracy`` groups
them) and per kind, professional or non-expert (crowd recordings may contain real mistakes, so
theirs are an upper bound). Copies live in memory (and a temp folder only if asked).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..acoustic.base import AcousticModel
from ..align import AlignmentError
from ..align.words import align_reference
from ..analyze import AnalyzeSettings, analyze
from ..assess.madd import STOP_KINDS
from ..assess.pace import PaceTracker, held_durations
from ..audio import SAMPLE_RATE, AudioError, decode_audio
from ..quran import build_reference
from ..report.schema import Report
from .accuracy import WordTimings
from .manifest import Recording, read_manifest
from .tsm import crossfade_join, stretch_span

WORD_TYPES = ("delete_word", "repeat_word", "substitute_word")
MADD_TYPES = ("shorten_madd", "lengthen_madd")
TYPES = WORD_TYPES + MADD_TYPES + ("cut_ghunnah",)
CONTENT_KIND = {"delete_word": "missing", "repeat_word": "repeated", "substitute_word": "substituted"}


@dataclass(frozen=True)
class Mutation:
    kind: str
    word_index: int  # index in the reference (no basmala: single ayahs)
    unit_index: int | None
    audio: np.ndarray


def _word_span(truth, w):
    return int(truth[w][0] * SAMPLE_RATE), int(truth[w][1] * SAMPLE_RATE)


def word_mutations(audio, reference, truth, rng: random.Random, donors) -> list[Mutation]:
    """Delete, repeat and substitute one word each (words of 3+ phonemes, not the first)."""
    candidates = [w.index for w in reference.words if len(w.phonemes) >= 3 and w.index > 0]
    if not candidates:
        return []
    out = []
    w = rng.choice(candidates)
    a, b = _word_span(truth, w)
    out.append(Mutation("delete_word", w, None, crossfade_join([audio[:a], audio[b:]])))
    w = rng.choice(candidates)
    a, b = _word_span(truth, w)
    out.append(Mutation("repeat_word", w, None, crossfade_join([audio[:b], audio[a:b], audio[b:]])))
    w = rng.choice(candidates)
    a, b = _word_span(truth, w)
    own = reference.words[w].phonemes
    options = [d for d in donors if d[0] != own and 0.6 < d[1].size / max(b - a, 1) < 1.6]
    if options:
        donor = rng.choice(options)[1]
        out.append(Mutation("substitute_word", w, None, crossfade_join([audio[:a], donor, audio[b:]])))
    return out


def tajweed_mutations(audio, reference, model, rng: random.Random) -> list[Mutation]:
    """Shorten a long madd to about 2 counts (as long as this reciter's own natural madds),
    lengthen a natural madd to about 4 (twice), and cut a ghunnah to a third, from our own
    alignment (with the audio, as ``analyze`` aligns). A madd before the end of the ayah
    (aared, a mottasel at the stop) is never shortened: 2 counts are allowed there."""
    try:
        aligned = align_reference(model.log_probs(audio), reference, model.vocab, model.frame_seconds,
                                  audio=audio)
    except AlignmentError:
        return []
    held = held_durations(aligned)
    spans = aligned.sound[:, 1] - aligned.sound[:, 0]
    naturals = [spans[u.index] for u in reference.units[:-1]
                if any(r.family == "madd" and r.kind == "natural" for r in u.rules) and np.isfinite(spans[u.index])]
    natural_s = float(np.median(naturals)) if len(naturals) >= 3 else None
    pace = PaceTracker(reference, aligned, held)  # the reciter's count, where few natural madds tell it
    plans = {
        "shorten_madd": (lambda r: r.family == "madd" and (r.harakat or 0) >= 4 and r.kind not in STOP_KINDS, None),
        "lengthen_madd": (lambda r: r.family == "madd" and r.kind == "natural", 2.0),  # 2 -> about 4 counts
        "cut_ghunnah": (lambda r: r.family == "ghunnah", 0.35),
    }
    out = []
    for kind, (wanted, factor) in plans.items():
        units = [u for u in reference.units
                 if any(wanted(r) for r in u.rules) and held[u.index] >= 0.12 and u.index + 1 < len(reference.units)]
        if not units:
            continue
        unit = rng.choice(units)
        start, end = aligned.sound[unit.index]
        factor_here = factor
        if kind == "shorten_madd":  # to about 2 counts: the length of this reciter's natural madds
            natural_here = natural_s or 2 * pace.at(aligned.units[unit.index].start).harakah_s
            factor_here = natural_here / spans[unit.index]
            if factor_here >= 0.8:
                continue  # already about as short as a natural madd: nothing to plant
        try:
            mutated = stretch_span(audio, float(start), float(end), factor_here)
        except ValueError:
            continue
        out.append(Mutation(kind, unit.word_index, unit.index, mutated))
    return out


def reported(report: Report, kind: str) -> list[int]:
    """Locations (word index, or unit index for tajweed) where the report found ``kind``."""
    if kind in CONTENT_KIND:
        return [w for e in report.content_errors if e.kind == CONTENT_KIND[kind] for w in e.word_indices]
    family, problem = {"shorten_madd": ("madd", "too_short"), "lengthen_madd": ("madd", "too_long"),
                       "cut_ghunnah": ("ghunnah", "too_short")}[kind]
    return [v.phoneme_index for v in report.violations
            if v.rule.startswith(family + ":") and v.problem == problem]


def is_detected(report: Report, mutation: Mutation) -> tuple[bool, int]:
    """(found at the right place, number of same-type reports elsewhere)."""
    found = reported(report, mutation.kind)
    target = mutation.unit_index if mutation.unit_index is not None else mutation.word_index
    tolerance = 1 if mutation.kind == "repeat_word" else 0
    hits = [x for x in found if abs(x - target) <= tolerance]
    return bool(hits), len(found) - len(hits)


def _kind(rec: Recording) -> str:
    return "professional" if rec.kind.startswith("professional") else "non-expert"


def _per_ayah(tally: dict) -> dict:
    ayahs = max(tally["ayahs"], 1)
    return {**tally, "violations_per_ayah": round(tally["violations"] / ayahs, 3),
            "content_errors_per_ayah": round(tally["content_errors"] / ayahs, 3),
            "not_this_ayah_share": round(tally["not_this_ayah"] / max(tally["files"], 1), 3)}


def evaluate_mutations(model: AcousticModel, manifest: str | Path, *, split: str | None = "dev",
                       seed: int = 0, limit: int | None = None, progress=None,
                       settings: AnalyzeSettings | None = None, reciter: str | None = None) -> dict:
    settings = settings or AnalyzeSettings()
    manifest = Path(manifest)
    recordings = read_manifest(manifest, split, reciter)[:limit]
    timings_path = manifest.parent / "alignments" / "alafasy-word-timings.json"
    timings = WordTimings(timings_path, "alafasy") if timings_path.is_file() else None

    decoded: dict[Path, np.ndarray] = {}
    donors = []  # (phonemes, audio) of words with reference timings, for substitutions
    for rec in recordings:
        truth = timings.for_recording(rec) if timings else None
        if truth is None or rec.ayah == 1:
            continue
        try:
            audio = decoded.setdefault(rec.path, decode_audio(rec.path))
        except AudioError:
            continue
        reference = build_reference(rec.spec)
        if len(reference.words) == len(truth):
            for w in reference.words:
                if len(w.phonemes) >= 3:
                    a, b = _word_span(truth, w.index)
                    donors.append((w.phonemes, audio[a:b]))

    counts = {t: defaultdict(int) for t in TYPES}
    new_tally = lambda: {"files": 0, "ayahs": 0, "violations": 0, "content_errors": 0, "not_this_ayah": 0}  # noqa: E731
    by_kind, by_group = defaultdict(new_tally), defaultdict(new_tally)
    per_file = []
    for rec in recordings:
        try:
            audio = decoded.get(rec.path)
            audio = audio if audio is not None else decode_audio(rec.path)
        except AudioError as exc:
            per_file.append({"file": str(rec.path), "error": str(exc)})
            continue
        try:
            base = analyze(audio, rec.spec, settings, model)
        except AudioError as exc:  # e.g. a recording too quiet for the VAD: counted, not judged
            per_file.append({"file": str(rec.path), "error": str(exc)})
            continue
        for tally in (by_kind[_kind(rec)], by_group[rec.reciter]):
            tally["files"] += 1
            tally["ayahs"] += rec.ayah_end - rec.ayah + 1
            tally["violations"] += len(base.violations)
            tally["content_errors"] += len(base.content_errors)
            tally["not_this_ayah"] += base.gate.path == "content_mismatch"  # the whole take turned down
        if _kind(rec) == "professional":
            # anything reported on a correct professional recitation is a false positive; crowd
            # recordings may hold real mistakes, so they only count as false alarms below
            for kind in TYPES:
                counts[kind]["fp"] += len(reported(base, kind))
        entry = {"file": str(rec.path), "spec": rec.spec, "violations": len(base.violations),
                 "content_errors": len(base.content_errors), "mutations": {}}
        truth = timings.for_recording(rec) if timings else None
        reference = build_reference(rec.spec)
        mutations = []
        if truth is not None and rec.ayah != 1 and len(reference.words) == len(truth):
            file_rng = random.Random(f"{seed}:{rec.path.name}")
            mutations = word_mutations(audio, reference, truth, file_rng, donors)
            mutations += tajweed_mutations(audio, reference, model, file_rng)
        for mutation in mutations:
            try:
                report = analyze(mutation.audio, rec.spec, settings, model)
            except AudioError:
                counts[mutation.kind]["fn"] += 1
                continue
            hit, elsewhere = is_detected(report, mutation)
            counts[mutation.kind]["tp" if hit else "fn"] += 1
            counts[mutation.kind]["fp"] += elsewhere
            entry["mutations"][mutation.kind] = {"word": mutation.word_index, "unit": mutation.unit_index,
                                                 "detected": hit}
        per_file.append(entry)
        if progress:
            progress(rec)
    return {
        "manifest": str(manifest), "split": split, "seed": seed,
        "types": {k: prf(v) for k, v in counts.items()},
        "word_errors": prf(_sum(counts, WORD_TYPES)),
        "madd_errors": prf(_sum(counts, MADD_TYPES)),
        "false_alarms": {k: _per_ayah(v) for k, v in by_kind.items()},
        "false_alarms_by_group": {g: _per_ayah(v) for g, v in sorted(by_group.items())},
        "files": per_file,
    }


def _sum(counts, kinds):
    total = defaultdict(int)
    for kind in kinds:
        for key, value in counts[kind].items():
            total[key] += value
    return total


def prf(c) -> dict:
    tp, fp, fn = c.get("tp", 0), c.get("fp", 0), c.get("fn", 0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(f1, 3)}
