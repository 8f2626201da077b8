"""Offline assessment of one recording: ``analyze(audio, "1:2") -> Report``.

Stages, each timed: decode -> vad (find the speech) -> acoustic (CTC log-probs) -> content (free
decoding against the reference; the gate) -> align (forced alignment of the reference) ->
assess (tajweed validators) -> report (scores, feedback). Above the gate's phoneme error rate
the recording is taken not to be this ayah: the report lists word errors only.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .acoustic.base import AcousticModel
from .align import AlignmentError
from .align.words import ReferenceAlignment, SoundEdges, align_reference
from .assess.content import (ContentResult, Heard, add_alignment_repeats, add_badly_fitting_words,
                             check_content)
from .assess.findings import AssessmentContext, RuleFinding
from .assess.ghunnah import check_ghunnah
from .assess.madd import check_madd
from .assess.qalqalah import check_qalqalah
from .assess.shadda import check_shadda
from .assess.sifat import check_sifat, unit_sifat
from .assess.waqf import check_waqf
from .audio import SAMPLE_RATE, AudioError, AudioLimits, SpeechSegment, decode_audio, speech_segments
from .audio.pitch import Pitch, estimate_pitch, pitch_summary
from .config import RecitationSettings
from .quran import Reference, build_reference, parse_spec
from .quran.text import has_separate_basmala
from .report import feedback, scoring
from .report.schema import ContentError, Gate, PhonemeResult, Report, SifaResult, Violation, WordPitch, WordResult

DEFAULT_GATE_PER = 0.08
EDGE_S = 0.3  # audio kept around the speech the VAD found


@dataclass(frozen=True)
class AnalyzeSettings:
    recitation: RecitationSettings = field(default_factory=RecitationSettings)
    profile: str = "beginner"
    #: PER of free decoding above which the recording is not this ayah; None: the model's own
    #: recommendation (its card's ``gate_per``), else 8 %
    gate_per: float | None = None
    #: "auto" picks whichever of with/without basmala the recording matches for an ayah 1
    basmala: str = "auto"
    limits: AudioLimits = field(default_factory=AudioLimits)


class Stopwatch:
    """Milliseconds spent per named stage (a stage entered twice adds up)."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round(self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000, 1)


def analyze(audio: str | Path | bytes | np.ndarray, ayah_spec: str,
            settings: AnalyzeSettings | None = None, model: AcousticModel | None = None, *,
            pitch: Pitch | None = None) -> Report:
    """Assess a recitation of ``ayah_spec``. ``audio``: a path, file bytes, or 16 kHz float samples;
    ``pitch``: ``estimate_pitch`` of those samples, when the caller has it already (a stream).

    Raises AudioError for unusable audio (including no speech) and UnknownAyahError for specs.
    """
    settings = settings or AnalyzeSettings()
    spec = parse_spec(ayah_spec)  # fail fast on a bad spec, before any decoding
    if model is None:
        from .acoustic.registry import load_model

        model = load_model()
    clock = Stopwatch()
    with clock.stage("decode"):
        samples = audio if isinstance(audio, np.ndarray) else decode_audio(audio, limits=settings.limits)
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size > settings.limits.max_seconds * SAMPLE_RATE:
            raise AudioError(f"the recording is longer than the {settings.limits.max_seconds / 60:g} min limit")
    with clock.stage("vad"):
        edges = SoundEdges(samples, SAMPLE_RATE)
        segments = speech_segments(samples) or voice_by_energy(samples, edges)
        if not segments:
            raise AudioError("no speech found in the recording: recite closer to the microphone")
        first = max(0, segments[0].start - int(EDGE_S * SAMPLE_RATE))
        # Silero's speech probability fades over a long chanted recitation (held vowels, a
        # melody): its last segment may end seconds before the recitation does (7:5 by Alafasy:
        # at 14.9 s of 26 s). Sound clearly above the recording's floor after it is kept too.
        sound_end = int(edges.last_sound() * SAMPLE_RATE)
        last = min(samples.size, max(segments[-1].end, sound_end) + int(EDGE_S * SAMPLE_RATE))
        speech = samples[first:last]
        offset_s = first / SAMPLE_RATE
    sifat_heads = None
    with clock.stage("acoustic"):
        if hasattr(model, "log_probs_and_sifat"):  # one pass gives the sifat heads too
            log_probs, sifat_heads = model.log_probs_and_sifat(speech)
        else:
            log_probs = model.log_probs(speech)
    with clock.stage("content"):
        heard = Heard.from_log_probs(log_probs, model.vocab)
        reference, content = _choose_reference(spec, settings, heard, model)
        gate_per = settings.gate_per if settings.gate_per is not None else float(
            getattr(model, "card", {}).get("gate_per", DEFAULT_GATE_PER))
        matches = content.per <= gate_per

    aligned: ReferenceAlignment | None = None
    findings: list[RuleFinding] = []
    sifat_verdicts: dict = {}
    pace: dict[str, float] = {}
    if matches:
        with clock.stage("align"):
            # the reciter stopped before the end of the ayah: align the words they said to the
            # audio, not the whole ayah squeezed into it
            stopped_early = content.word_kind(len(reference.words) - 1) == "missing"
            try:
                aligned = align_reference(log_probs, reference, model.vocab, model.frame_seconds,
                                          offset_s=offset_s, audio=speech, partial=stopped_early)
            except AlignmentError:
                matches = False  # far too little audio for this ayah: a content problem
            else:
                add_alignment_repeats(content, aligned, offset_s, model.frame_seconds)
                add_badly_fitting_words(content, aligned, offset_s, model.frame_seconds)
    if matches and aligned is not None:
        with clock.stage("assess"):
            skip = {w for f in content.findings if f.kind in ("missing", "substituted") for w in f.word_indices}
            ctx = AssessmentContext(reference, aligned, samples, SAMPLE_RATE, skip_words=skip)
            findings = (check_madd(ctx) + check_ghunnah(ctx) + check_qalqalah(ctx) + check_shadda(ctx)
                        + check_waqf(ctx, _shift(heard, offset_s, model.frame_seconds), model.frame_seconds))
            if sifat_heads is not None:
                sifat_verdicts = unit_sifat(ctx, sifat_heads, model.frame_seconds, offset_s)
                findings += check_sifat(ctx, sifat_verdicts)
            findings.sort(key=lambda f: (f.time_range[0], f.rule_tag))
            overall = ctx.pace.overall()
            pace = {"harakah_s": round(overall.harakah_s, 3), "syllables": overall.samples}
    if aligned is not None and pitch is None:
        with clock.stage("pitch"):
            pitch = estimate_pitch(samples)
    with clock.stage("report"):
        report = _build_report(spec, reference, model, samples, segments, content, gate_per, matches,
                               aligned, findings, pace, settings, offset_s, sifat_verdicts, pitch)
    report.timings_ms = clock.ms
    return report


VOICE_RANGE_DB = 30.0  # a voice rises this far above the quietest frames; steady noise does not
VOICE_MIN_S = 0.5


def voice_by_energy(samples: np.ndarray, edges: SoundEdges | None = None) -> list[SpeechSegment]:
    """Silero hears no speech in some real recitations (a non-native crowd recording of 1:1 never
    passes 0.29): where the recording holds at least ``VOICE_MIN_S`` of sound with the dynamics
    of a voice, that stretch is taken as speech and the acoustic model judges it. ``edges``: the
    recording's SoundEdges, if the caller has them."""
    edges = edges or SoundEdges(samples, SAMPLE_RATE)
    frames = edges.sound_frames()
    if edges.dynamic_range < VOICE_RANGE_DB or frames.size * edges.HOP_S < VOICE_MIN_S:
        return []
    hop = int(edges.HOP_S * SAMPLE_RATE)
    return [SpeechSegment(int(frames[0]) * hop, min(samples.size, (int(frames[-1]) + 1) * hop))]


def _choose_reference(spec, settings, heard, model) -> tuple[Reference, ContentResult]:
    options = [build_reference(spec, settings.recitation)]
    if spec.ayah == 1 and spec.word_start is None and has_separate_basmala(spec.surah):
        with_basmala = build_reference(spec, settings.recitation, include_basmala=True)
        options = {"yes": [with_basmala], "no": options}.get(settings.basmala, options + [with_basmala])
    results = [(ref, check_content(heard, ref, model.vocab)) for ref in options]
    return min(results, key=lambda pair: pair[1].per)


def _word_pitch(pitch: Pitch | None, timing) -> WordPitch | None:
    summary = pitch_summary(pitch, timing.start, timing.end) if pitch is not None and timing else None
    return WordPitch(**summary) if summary else None


def _shift(heard: Heard, offset_s: float, frame_seconds: float) -> Heard:
    return Heard(heard.phonemes, heard.frames + int(round(offset_s / frame_seconds)))


def _build_report(spec, reference, model, samples, segments, content, gate_per, matches, aligned,
                  findings, pace, settings, offset_s, sifat_verdicts, pitch: Pitch | None = None) -> Report:
    frame_s = model.frame_seconds
    word_kind = {w: f.kind for f in content.findings if f.kind in ("missing", "substituted")
                 for w in f.word_indices}
    rule_words = {f.word_index for f in findings}
    words = []
    for word in reference.words:
        kind = word_kind.get(word.index)
        if kind == "missing":
            verdict = "missing"
        elif kind == "substituted":
            verdict = "content_error"
        elif not matches:
            verdict = "not_assessed"
        else:
            verdict = "tajweed_error" if word.index in rule_words else "correct"
        timing = aligned.words[word.index] if aligned else None
        if timing is not None and not np.isfinite(timing.start):
            timing = None  # never reached: the recitation stopped before it
        phonemes = []
        if timing is not None:
            for unit in reference.word_units(word.index):
                u = aligned.units[unit.index]
                if not np.isfinite(u.start):  # the recitation stopped inside the word, before this unit
                    continue
                phonemes.append(PhonemeResult(index=unit.index, phonemes=unit.phonemes,
                                              start=round(u.start, 3), end=round(u.end, 3),
                                              confidence=round(u.posterior, 3), gop=round(u.gop, 3),
                                              rules=[r.tag for r in unit.rules],
                                              sifat={level: SifaResult(expected=v.expected, predicted=v.predicted,
                                                                       probability=v.probability)
                                                     for level, v in sifat_verdicts[unit.index].items()}
                                              if unit.index in sifat_verdicts else None))
        words.append(WordResult(
            index=word.index, surah=word.surah, ayah=word.ayah, number=word.number, text=word.text,
            start=round(timing.start, 3) if timing else None, end=round(timing.end, 3) if timing else None,
            verdict=verdict, confidence=round(timing.posterior, 3) if timing else 0.0, phonemes=phonemes,
            pitch=_word_pitch(pitch, timing)))

    content_errors = []
    for finding in content.findings:
        word = reference.words[finding.word_indices[0]].text
        time_range = None
        if finding.frames:
            time_range = (round(offset_s + finding.frames[0] * frame_s, 3),
                          round(offset_s + (finding.frames[1] + 1) * frame_s, 3))
        content_errors.append(ContentError(kind=finding.kind, word_indices=list(finding.word_indices),
                                           expected=finding.expected, heard=finding.heard,
                                           time_range=time_range,
                                           feedback=feedback.content_feedback(finding.kind, word)))
    violations = [Violation(rule=f.rule_tag, problem=f.problem, word_index=f.word_index, phoneme_index=f.unit_index,
                            time_range=f.time_range, expected=str(f.expected), actual=str(f.measured),
                            severity=f.severity, confidence=f.confidence, feedback=feedback.rule_feedback(f))
                  for f in findings]
    checks = sum(len(u.rules) for u in reference.units)
    scores = scoring.score(
        settings.profile,
        pronunciation=scoring.pronunciation_score([u.gop for u in aligned.units if np.isfinite(u.start)])
        if aligned else 0.0,
        tajweed=scoring.tajweed_score([f.severity for f in findings], [f.confidence for f in findings], checks)
        if matches else 0.0,
        content=scoring.content_score(content.per))
    return Report(
        spec=reference.spec, model=getattr(model, "card", {}).get("name", type(model).__name__),
        duration_s=round(samples.size / SAMPLE_RATE, 3),
        speech=[(round(s.start_s, 3), round(s.end_s, 3)) for s in segments],
        words=words, content_errors=content_errors, violations=violations, scores=scores,
        gate=Gate(per=round(content.per, 4), threshold=gate_per,
                  path="assessed" if matches else "content_mismatch"),
        pace=pace)
