"""``iqrah eval accuracy``: how well an acoustic model hears, and how well words are placed in time.

Per reciter group of a manifest: PER of greedy decoding against the reference phonemes (runs
collapsed, total edits over total reference length), real-time factor of the model, and, for
recordings with reference word timings (Alafasy), the error of forced-alignment word boundaries
next to a baseline that spreads the words over the speech region in proportion to their
phoneme counts. Reference timings made by a segmenter (quran-align: every word runs on to the
next, a pause included in the word before it) are compared with our words as the same
segmentation (``as_segmentation``); where our words stop with their sound is under
``sound_spans``. The same figures pooled by the manifest's ``kind`` (professional, non-expert...)
are under ``kinds``. Each PER comes with ``per_ci95``, its 95 % interval over the group's files
drawn again with replacement: how far it could move on other recordings of the kind. Where a
first ayah may start with the basmala, the reference (with or without it) that the decoding
matches better is used.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..acoustic.base import AcousticModel
from ..align import AlignmentError
from ..align.words import align_reference
from ..audio import SAMPLE_RATE, AudioError, decode_audio, speech_segments
from ..quran import Reference
from .manifest import Recording, read_manifest
from .metrics import collapse_runs, phoneme_error_rate

from Levenshtein import distance


class WordTimings:
    """Reference word timings: ``timings[surah-1][ayah-1] = [[word, start_ms, end_ms], ...]``.

    ``segmentation``: the timings cut each ayah into consecutive words with no gap between them
    (at least 90 % of the gaps between two words are 20 ms or less), as quran-align's are (10 ms
    apart, 99 % of its 71,156 gaps for Alafasy): a pause is then part of a word, not a boundary."""

    SEGMENT_GAP_MS = 20

    def __init__(self, path: Path, reciter: str):
        with open(path, encoding="utf-8") as f:
            self._data = json.load(f)
        self.reciter = reciter.lower()
        gaps = [b[1] - a[2] for surah in self._data or [] for ayah in surah or []
                for a, b in zip(ayah or [], (ayah or [])[1:])]
        self.segmentation = bool(gaps) and np.mean(np.asarray(gaps) <= self.SEGMENT_GAP_MS) >= 0.9

    def for_recording(self, rec: Recording) -> list[tuple[float, float]] | None:
        """(start_s, end_s) per word, or None if there are none for this recording."""
        if self.reciter not in rec.reciter.lower() or rec.ayah != rec.ayah_end or rec.text:
            return None
        try:
            words = self._data[rec.surah - 1][rec.ayah - 1]
        except (IndexError, TypeError):
            return None
        return [(start / 1000, end / 1000) for _, start, end in words] or None


@dataclass
class GroupStats:
    files: int = 0
    failed: int = 0
    audio_s: float = 0.0
    model_s: float = 0.0
    word_errors_ms: list[float] = field(default_factory=list)
    baseline_errors_ms: list[float] = field(default_factory=list)
    ctc_only_errors_ms: list[float] = field(default_factory=list)  # pause edges by a fixed pad
    sound_span_errors_ms: list[float] = field(default_factory=list)  # words as they sound, pauses apart
    timing_files: int = 0
    timing_skipped: int = 0
    file_edits: list[tuple[int, int]] = field(default_factory=list)  # (edits, reference length) per file

    @property
    def edits(self) -> int:
        return sum(edits for edits, _ in self.file_edits)

    @property
    def ref_len(self) -> int:
        return sum(length for _, length in self.file_edits)

    def merge(self, other: "GroupStats") -> None:
        for name in ("files", "failed", "timing_files", "timing_skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.audio_s += other.audio_s
        self.model_s += other.model_s
        self.word_errors_ms += other.word_errors_ms
        self.baseline_errors_ms += other.baseline_errors_ms
        self.ctc_only_errors_ms += other.ctc_only_errors_ms
        self.sound_span_errors_ms += other.sound_span_errors_ms
        self.file_edits += other.file_edits

    def summary(self) -> dict:
        out = {"files": self.files, "per": round(self.edits / self.ref_len, 4) if self.ref_len else None,
               "rtf": round(self.model_s / self.audio_s, 4) if self.audio_s else None}
        if len(self.file_edits) > 1:
            out["per_ci95"] = per_interval(self.file_edits)
        if self.failed:
            out["failed"] = self.failed
        if self.word_errors_ms:
            out.update(boundary_stats(self.word_errors_ms))
            out["ctc_only"] = boundary_stats(self.ctc_only_errors_ms)
            out["sound_spans"] = boundary_stats(self.sound_span_errors_ms)
            out["timing_files"] = self.timing_files
            if self.timing_skipped:
                out["timing_skipped"] = self.timing_skipped
        return out


def per_interval(file_edits: list[tuple[int, int]], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95 % interval of a group's PER over recordings drawn again with replacement (a file
    bootstrap): how far the figure could move on other recordings of the same kind. 28 files of
    RetaSy give about +-4 pp."""
    counts = np.asarray(file_edits, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(counts), size=(resamples, len(counts)))
    rates = counts[draws, 0].sum(axis=1) / np.maximum(counts[draws, 1].sum(axis=1), 1)
    low, high = np.percentile(rates, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def boundary_stats(errors_ms: list[float]) -> dict:
    errors = np.abs(np.asarray(errors_ms))
    return {"word_mae_ms": round(float(errors.mean()), 1),
            "word_median_ms": round(float(np.median(errors)), 1),
            "within_50ms": round(float((errors <= 50).mean()), 4),
            "within_100ms": round(float((errors <= 100).mean()), 4),
            "boundaries": int(errors.size)}


def as_segmentation(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Word spans as a segmenter cuts them: a word that stops before a pause runs on to where the
    next word starts (the pause counted with the word before it, as quran-align counts it). Words
    that meet or overlap (a restart) and words without a time stay as they are."""
    segments = list(spans)
    for k in range(len(segments) - 1):
        start, end = segments[k]
        following = segments[k + 1][0]
        if np.isfinite(following) and np.isfinite(end) and following > end:
            segments[k] = (start, following)
    return segments


def proportional_baseline(reference: Reference, audio: np.ndarray) -> list[tuple[float, float]]:
    """Words spread over the speech region (VAD) in proportion to their phoneme counts."""
    segments = speech_segments(audio)
    start = segments[0].start_s if segments else 0.0
    end = segments[-1].end_s if segments else audio.size / SAMPLE_RATE
    counts = np.array([max(len(w.phonemes), 1) for w in reference.words], dtype=float)
    edges = start + (end - start) * np.concatenate(([0.0], np.cumsum(counts) / counts.sum()))
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def evaluate_recording(model: AcousticModel, rec: Recording, timings: WordTimings | None) -> tuple[GroupStats, dict]:
    stats = GroupStats(files=1)
    detail: dict = {"file": str(rec.path), "spec": rec.spec}
    try:
        audio = decode_audio(rec.path)
    except AudioError as exc:
        stats.failed = 1
        detail["error"] = str(exc)
        return stats, detail
    start = time.perf_counter()
    log_probs = model.log_probs(audio)
    stats.model_s = time.perf_counter() - start
    stats.audio_s = audio.size / SAMPLE_RATE
    hypothesis = model.vocab.greedy(log_probs)
    try:
        candidates = rec.references()
    except ValueError as exc:
        stats.failed = 1
        detail["error"] = str(exc)
        return stats, detail
    reference = min(candidates, key=lambda r: phoneme_error_rate(hypothesis, r.phonemes))
    ref_collapsed = collapse_runs(reference.phonemes)
    edits, ref_len = distance(collapse_runs(hypothesis), ref_collapsed), len(ref_collapsed)
    stats.file_edits = [(edits, ref_len)]
    detail["per"] = round(edits / max(ref_len, 1), 4)
    detail["basmala"] = reference.includes_basmala

    truth = timings.for_recording(rec) if timings else None
    if truth is not None:
        ayah_words = [w.index for w in reference.words if w.ayah != 0]
        if len(ayah_words) != len(truth):
            stats.timing_skipped = 1
            detail["timing"] = f"{len(ayah_words)} words in the reference, {len(truth)} timings"
            return stats, detail
        try:
            aligned = align_reference(log_probs, reference, model.vocab, model.frame_seconds, audio=audio)
            ctc_only = align_reference(log_probs, reference, model.vocab, model.frame_seconds)
        except AlignmentError as exc:
            stats.failed = 1
            detail["error"] = str(exc)
            return stats, detail
        baseline = proportional_baseline(reference, audio)
        spans = [(word.start, word.end) for word in aligned.words]
        plain = [(word.start, word.end) for word in ctc_only.words]
        as_reference = as_segmentation if timings.segmentation else list
        segments, plain = as_reference(spans), as_reference(plain)
        for w, (t_start, t_end) in zip(ayah_words, truth):
            stats.word_errors_ms += [(segments[w][0] - t_start) * 1000, (segments[w][1] - t_end) * 1000]
            stats.sound_span_errors_ms += [(spans[w][0] - t_start) * 1000, (spans[w][1] - t_end) * 1000]
            stats.ctc_only_errors_ms += [(plain[w][0] - t_start) * 1000, (plain[w][1] - t_end) * 1000]
            b_start, b_end = baseline[w]
            stats.baseline_errors_ms += [(b_start - t_start) * 1000, (b_end - t_end) * 1000]
        stats.timing_files = 1
        detail["word_mae_ms"] = round(float(np.mean(np.abs(stats.word_errors_ms))), 1)
    return stats, detail


def evaluate_accuracy(model: AcousticModel, manifest: str | Path, *, split: str | None = "dev",
                      timings_path: str | Path | None = None, timings_reciter: str = "alafasy",
                      limit: int | None = None, progress=None, model_card: dict | None = None,
                      reciter: str | None = None) -> dict:
    """Run the evaluation; returns the JSON-ready result (see module docstring)."""
    manifest = Path(manifest)
    recordings = read_manifest(manifest, split, reciter)[:limit]
    if timings_path is None:
        default = manifest.parent / "alignments" / "alafasy-word-timings.json"
        timings_path = default if default.is_file() else None
    timings = WordTimings(Path(timings_path), timings_reciter) if timings_path else None

    groups: dict[str, GroupStats] = defaultdict(GroupStats)
    kinds: dict[str, GroupStats] = defaultdict(GroupStats)  # professional, non-expert...
    details = []
    for rec in recordings:
        stats, detail = evaluate_recording(model, rec, timings)
        groups[rec.reciter].merge(stats)
        kinds[rec.kind or "unknown"].merge(stats)
        detail["reciter"] = rec.reciter
        details.append(detail)
        if progress:
            progress(rec)

    overall = GroupStats()
    baseline_errors: list[float] = []
    for stats in groups.values():
        overall.merge(stats)
        baseline_errors += stats.baseline_errors_ms
    result = {
        "model": model_card or {},
        "manifest": str(manifest),
        "split": split,
        "groups": {name: stats.summary() for name, stats in sorted(groups.items())},
        "kinds": {name: stats.summary() for name, stats in sorted(kinds.items())},
        "overall": overall.summary(),
        "baseline": boundary_stats(baseline_errors) if baseline_errors else {},
        # how word boundaries were compared: as a segmentation (reference timings without gaps) or
        # as the spans where words sound
        "boundary_convention": ("segmentation" if timings.segmentation else "sound spans") if timings else None,
        "files": details,
    }
    return result
