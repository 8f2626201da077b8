"""The report a learner reads, built from what the judge found (``assess.judge.Judgement``):
a verdict and timings per word, content errors and tajweed violations with their feedback,
and the scores."""

from __future__ import annotations

import numpy as np

from ..assess.findings import RuleFinding
from ..assess.judge import Judgement, word_verdict
from ..assess.prosody import ProsodyResult, WordProsody
from ..audio import SAMPLE_RATE, SpeechSegment
from ..audio.pitch import Pitch, pitch_summary
from . import feedback, scoring
from .schema import (ContentError, Gate, PhonemeResult, Prosody, ProsodyScores, Report, SifaResult, Violation,
                     WordPitch, WordResult)
from .schema import WordProsody as WordProsodyModel


def violation(finding: RuleFinding) -> Violation:
    """A validator's finding as the learner reads it (the stream sends the same, live)."""
    return Violation(rule=finding.rule_tag, problem=finding.problem, word_index=finding.word_index,
                     phoneme_index=finding.unit_index, time_range=finding.time_range,
                     expected=str(finding.expected), actual=str(finding.measured), severity=finding.severity,
                     confidence=finding.confidence, feedback=feedback.rule_feedback(finding))


def build_report(judged: Judgement, *, samples: np.ndarray, segments: list[SpeechSegment], model_name: str,
                 profile: str, pitch: Pitch | None = None) -> Report:
    """``samples``: the whole recording; ``segments``: where the VAD heard speech in it."""
    reference, content, aligned = judged.reference, judged.content, judged.aligned
    scores = scoring.score(
        profile,
        pronunciation=scoring.pronunciation_score([u.gop for u in aligned.units if np.isfinite(u.start)])
        if aligned else 0.0,
        tajweed=scoring.tajweed_score([f.severity for f in judged.findings], [f.confidence for f in judged.findings],
                                      sum(len(u.rules) for u in reference.units))
        if judged.matches else 0.0,
        content=scoring.content_score(_word_errors(judged), len(reference.words)) if judged.matches
        else scoring.mismatch_content_score(content.per))
    return Report(
        spec=reference.spec, model=model_name, duration_s=round(samples.size / SAMPLE_RATE, 3),
        speech=[(round(s.start_s, 3), round(s.end_s, 3)) for s in segments],
        words=_words(judged, pitch), content_errors=_content_errors(judged),
        violations=[violation(f) for f in judged.findings], scores=scores,
        gate=Gate(per=round(content.per, 4), threshold=judged.gate_per,
                  path="assessed" if judged.matches else "content_mismatch"),
        pace=judged.pace)


def _word_errors(judged: Judgement) -> int:
    """Words said wrong or left out, and words said that the ayah does not have (added or repeated)."""
    added = sum(1 for f in judged.content.findings if f.kind in ("repeated", "extra"))
    return len(judged.content.wrong_words()) + added


def _words(judged: Judgement, pitch: Pitch | None) -> list[WordResult]:
    reference, aligned = judged.reference, judged.aligned
    content_kind = {w: f.kind for f in judged.content.findings if f.kind in ("missing", "substituted")
                    for w in f.word_indices}
    rule_words = {f.word_index for f in judged.findings}
    words = []
    for word in reference.words:
        verdict = word_verdict(content_kind.get(word.index), judged.matches, word.index in rule_words)
        timing = aligned.words[word.index] if aligned else None
        if timing is not None and not np.isfinite(timing.start):
            timing = None  # never reached: the recitation stopped before it
        words.append(WordResult(
            index=word.index, surah=word.surah, ayah=word.ayah, number=word.number, text=word.text,
            start=round(timing.start, 3) if timing else None, end=round(timing.end, 3) if timing else None,
            verdict=verdict, confidence=round(timing.posterior, 3) if timing else 0.0,
            phonemes=_phonemes(judged, word.index) if timing else [], pitch=_word_pitch(pitch, timing)))
    return words


def _phonemes(judged: Judgement, word_index: int) -> list[PhonemeResult]:
    phonemes = []
    for unit in judged.reference.word_units(word_index):
        u = judged.aligned.units[unit.index]
        if not np.isfinite(u.start):  # the recitation stopped inside the word, before this unit
            continue
        sifat = judged.sifat.get(unit.index)
        phonemes.append(PhonemeResult(
            index=unit.index, phonemes=unit.phonemes, start=round(u.start, 3), end=round(u.end, 3),
            confidence=round(u.posterior, 3), gop=round(u.gop, 3), rules=[r.tag for r in unit.rules],
            sifat={level: SifaResult(expected=v.expected, predicted=v.predicted, probability=v.probability)
                   for level, v in sifat.items()} if sifat is not None else None))
    return phonemes


def _content_errors(judged: Judgement) -> list[ContentError]:
    errors = []
    for finding in judged.content.findings:
        word = judged.reference.words[finding.word_indices[0]].text
        time_range = None
        if finding.frames:
            time_range = (round(judged.offset_s + finding.frames[0] * judged.frame_seconds, 3),
                          round(judged.offset_s + (finding.frames[1] + 1) * judged.frame_seconds, 3))
        errors.append(ContentError(kind=finding.kind, word_indices=list(finding.word_indices),
                                   expected=finding.expected, heard=finding.heard, time_range=time_range,
                                   feedback=feedback.content_feedback(finding.kind, word)))
    return errors


def _word_pitch(pitch: Pitch | None, timing) -> WordPitch | None:
    summary = pitch_summary(pitch, timing.start, timing.end) if pitch is not None and timing else None
    return WordPitch(**summary) if summary else None


def word_prosody(word: WordProsody) -> WordProsodyModel:
    return WordProsodyModel(**word.to_dict())


def prosody(result: ProsodyResult, reference) -> Prosody:
    """The prosody comparison as the learner reads it, with a feedback line per finding."""
    data = result.to_dict()
    lines = [feedback.prosody_feedback(f, reference.words[w.index].text) for w in result.words for f in w.findings]
    return Prosody(reciter=result.reciter, tempo_ratio=data["tempo_ratio"], npvi=data["npvi"],
                   scores=ProsodyScores(**result.scores), words=[word_prosody(w) for w in result.words],
                   feedback=lines)
