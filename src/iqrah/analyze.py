"""Offline assessment of one recording: ``analyze(audio, "1:2") -> Report``.

Stages, each timed: decode -> vad (find the speech) -> acoustic (CTC log-probs) -> content (free
decoding against the reference; the gate) -> align (forced alignment of the reference) ->
assess (tajweed validators) -> report (scores, feedback). Above the gate's phoneme error rate
the recording is taken not to be this ayah: the report lists word errors only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .acoustic.base import AcousticModel
from .align import AlignmentError
from .align.words import align_reference
from .assess.content import (ContentResult, Heard, add_alignment_repeats, check_content,
                             judge_words_by_fit)
from .assess.findings import AssessmentContext
from .assess.judge import Judgement, run_validators, shift
from .assess.prosody import Contour, compare, prosody_applies, spans_of
from .audio import (SAMPLE_RATE, AudioLimitError, NoSpeechError, SpeechSegment, decode_audio,
                    speech_segments)
from .audio.energy import SoundEdges, voice_by_energy
from .audio.pitch import Pitch, estimate_pitch
from .config import AnalyzeSettings
from .quran import Reference, build_reference, parse_spec
from .quran.text import AyahSpec, ayah_count, has_separate_basmala
from .report.build import build_report, prosody
from .report.schema import Report
from .stopwatch import Stopwatch

__all__ = ["AnalyzeSettings", "analyze", "judge"]  # the settings live in config; here for callers

DEFAULT_GATE_PER = 0.08
# Above the gate but by less than this, the recording is judged as the chosen ayah unless a
# neighbouring ayah fits it clearly better. On the train split, a recording checked against an
# unrelated ayah never came below PER 0.67 (98 files), against the next ayah 5 % under 0.58:
# a learner whose correct take the model hears poorly (PER 0.5-0.65) was told "this does not
# sound like the ayah" on some takes and not on others; the wrong-neighbour case is what the check catches.
GATE_GRAY_ZONE = 0.15
NEIGHBOUR_MARGIN = 0.1  # PER by which a neighbouring ayah must fit better
EDGE_S = 0.3  # audio kept around the speech the VAD found


def analyze(audio: str | Path | bytes | np.ndarray, ayah_spec: str,
            settings: AnalyzeSettings | None = None, model: AcousticModel | None = None, *,
            pitch: Pitch | None = None, reciter: tuple[str, dict] | None = None,
            speech: list[SpeechSegment] | None = None) -> Report:
    """Assess a recitation of ``ayah_spec``. ``audio``: a path, file bytes, or 16 kHz float samples;
    ``pitch``: ``estimate_pitch`` of those samples, when the caller has it already (a stream);
    ``reciter``: (name, entry) of a reference reciter for this ayah (``iqrah.reciters``): the
    report then compares tempo, rhythm and melody with theirs (``Report.prosody``); ``speech``:
    the Silero VAD segments of those samples, when the caller has them already (a stream).

    Raises AudioError for unusable audio (including no speech) and UnknownAyahError for specs.
    """
    settings = settings or AnalyzeSettings()
    if model is None:
        from .acoustic.registry import load_model

        model = load_model()
    clock = Stopwatch()
    judged, samples, segments = judge(audio, ayah_spec, settings, model, clock=clock, speech=speech)
    if judged.aligned is not None and pitch is None:
        with clock.stage("pitch"):
            pitch = estimate_pitch(samples)
    with clock.stage("report"):
        report = build_report(judged, samples=samples, segments=segments, model_name=model.name,
                              profile=settings.profile, pitch=pitch)
    if reciter is not None and judged.aligned is not None and prosody_applies(judged.reference, reciter[1]):
        with clock.stage("prosody"):
            words, phonemes = spans_of(report.words)
            result = compare(reciter[0], words, phonemes, Contour.from_pitch(pitch), reciter[1])
            report.prosody = prosody(result, judged.reference)
    report.timings_ms = clock.ms
    return report


def judge(audio: str | Path | bytes | np.ndarray, ayah_spec: str, settings: AnalyzeSettings,
          model: AcousticModel, *, clock: Stopwatch | None = None,
          speech: list[SpeechSegment] | None = None) -> tuple[Judgement, np.ndarray, list[SpeechSegment]]:
    """What ``analyze`` finds before it writes the report: the Judgement (with the validators'
    context, for callers that measure more, such as reference reciters), the samples, and where
    the VAD heard speech. ``clock`` times the stages; ``speech`` as for ``analyze``."""
    spec = parse_spec(ayah_spec)  # fail fast on a bad spec, before any decoding
    clock = clock or Stopwatch()
    with clock.stage("decode"):
        samples = audio if isinstance(audio, np.ndarray) else decode_audio(audio, limits=settings.limits)
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size > settings.limits.max_seconds * SAMPLE_RATE:
            raise AudioLimitError(f"the recording is longer than the {settings.limits.max_seconds / 60:g} min limit")
    with clock.stage("vad"):
        edges = SoundEdges(samples, SAMPLE_RATE)
        segments = (speech if speech is not None else speech_segments(samples)) or voice_by_energy(samples, edges)
        if not segments:
            raise NoSpeechError("no speech found in the recording: recite closer to the microphone")
        first = max(0, segments[0].start - int(EDGE_S * SAMPLE_RATE))
        # Silero's speech probability fades over a long chanted recitation (held vowels, a
        # melody): its last segment may end seconds before the recitation does (7:5 by Alafasy:
        # at 14.9 s of 26 s). Sound clearly above the recording's floor after it is kept too.
        sound_end = int(edges.last_sound() * SAMPLE_RATE)
        last = min(samples.size, max(segments[-1].end, sound_end) + int(EDGE_S * SAMPLE_RATE))
        speech = samples[first:last]
        offset_s = first / SAMPLE_RATE
    with clock.stage("acoustic"):
        log_probs, sifat_heads = model.log_probs_and_sifat(speech)  # one pass gives the sifat heads too
    with clock.stage("content"):
        heard = Heard.from_log_probs(log_probs, model.vocab)
        reference, content = _choose_reference(spec, settings, heard, model)
        gate_per = settings.gate_per if settings.gate_per is not None else float(
            model.card.get("gate_per", DEFAULT_GATE_PER))
        matches = content.per <= gate_per or (content.per <= gate_per + GATE_GRAY_ZONE and not _neighbour_fits_better(
            spec, settings, heard, model, content.per))
    judged = Judgement(reference, content, gate_per, matches=matches, aligned=None,
                       offset_s=offset_s, frame_seconds=model.frame_seconds)
    if judged.matches:
        with clock.stage("align"):
            # the reciter stopped before the end of the ayah: align the words they said to the
            # audio, not the whole ayah squeezed into it
            stopped_early = content.word_kind(len(reference.words) - 1) == "missing"
            try:
                judged.aligned = align_reference(log_probs, reference, model.vocab, model.frame_seconds,
                                                 offset_s=offset_s, audio=speech, partial=stopped_early)
            except AlignmentError:
                judged.matches = False  # far too little audio for this ayah: a content problem
            else:
                add_alignment_repeats(content, judged.aligned, offset_s, model.frame_seconds)
                judge_words_by_fit(content, judged.aligned, reference, offset_s, model.frame_seconds)
    if judged.matches:
        with clock.stage("assess"):
            skip = content.wrong_words()
            ctx = AssessmentContext(reference, judged.aligned, samples, SAMPLE_RATE, skip_words=skip)
            judged.findings, judged.sifat = run_validators(
                ctx, heard=shift(heard, offset_s, model.frame_seconds), frame_seconds=model.frame_seconds,
                sifat_heads=sifat_heads, offset_s=offset_s)
            overall = ctx.pace.overall()
            judged.pace = {"harakah_s": round(overall.harakah_s, 3), "syllables": overall.samples}
            judged.context = ctx
    return judged, samples, segments


def _neighbour_fits_better(spec, settings, heard, model, per: float) -> bool:
    """Whether the recitation is rather one of the two ayahs (or ranges) before or after the one
    chosen: its PER against one of them is lower by NEIGHBOUR_MARGIN. A word span has none."""
    if spec.word_start is not None:
        return False
    count = ayah_count(spec.surah)
    for step in (-2, -1, 1, 2):
        first, last = spec.ayah + step, spec.ayah_end + step
        if 1 <= first and last <= count:
            _, content = _choose_reference(AyahSpec(spec.surah, first, last), settings, heard, model)
            if content.per < per - NEIGHBOUR_MARGIN:
                return True
    return False


def _choose_reference(spec, settings, heard, model) -> tuple[Reference, ContentResult]:
    options = [build_reference(spec, settings.recitation)]
    if spec.ayah == 1 and spec.word_start is None and has_separate_basmala(spec.surah):
        with_basmala = build_reference(spec, settings.recitation, include_basmala=True)
        options = {"yes": [with_basmala], "no": options}.get(settings.basmala, options + [with_basmala])
    results = [(ref, check_content(heard, ref, model.vocab)) for ref in options]
    return min(results, key=lambda pair: pair[1].per)
