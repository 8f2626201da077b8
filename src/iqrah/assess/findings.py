"""What a tajweed validator returns: one rule broken at one phoneme unit, with the evidence."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..align.words import PAUSE_S, ReferenceAlignment
from ..audio.energy import SoundEdges
from ..quran import Reference
from .pace import PaceTracker, held_durations


@dataclass(frozen=True)
class RuleFinding:
    """``problem`` names what went wrong (e.g. ``too_short``); ``measured`` and ``expected`` are
    in the rule's own unit (harakat for lengths, dB for bursts), for feedback and the report."""

    rule_tag: str
    problem: str
    unit_index: int
    word_index: int
    time_range: tuple[float, float]
    expected: float | str
    measured: float | str
    severity: str
    confidence: float
    name_en: str = ""
    name_ar: str = ""

    @classmethod
    def at(cls, ctx: "AssessmentContext", unit, rule, problem: str, *, expected, measured, severity: str,
           confidence: float) -> "RuleFinding":
        """A finding on ``unit`` for ``rule``, located where the unit sounds."""
        return cls(rule_tag=rule.tag, problem=problem, unit_index=unit.index, word_index=unit.word_index,
                   time_range=ctx.span(unit.index), expected=expected, measured=measured, severity=severity,
                   confidence=round(float(confidence), 3), name_en=rule.name_en, name_ar=rule.name_ar)


@dataclass
class AssessmentContext:
    """Everything validators look at: the reference, its alignment, the audio, the pace."""

    reference: Reference
    alignment: ReferenceAlignment
    audio: np.ndarray
    sample_rate: int
    held: np.ndarray = field(init=False)
    pace: PaceTracker = field(init=False)
    skip_words: set[int] = field(default_factory=set)  # words the content check found wrong
    only_words: set[int] | None = None  # judge just these (a stream judges word by word)
    # unit -> (start, held seconds) of units measured before this alignment (a stream's earlier
    # windows): the reciter's count still comes from them
    earlier_held: dict[int, tuple[float, float]] | None = None

    def __post_init__(self):
        self.held = held_durations(self.alignment)
        self.pace = PaceTracker(self.reference, self.alignment, self.held, self.earlier_held)
        self._edges: SoundEdges | None = None

    @property
    def edges(self) -> SoundEdges:
        if self._edges is None:
            self._edges = SoundEdges(self.audio, self.sample_rate)
        return self._edges

    def units_with(self, family: str):
        """(unit, rule) for every rule of ``family`` on a word that was said and timed."""
        for unit in self.reference.units:
            if unit.word_index in self.skip_words or not np.isfinite(self.held[unit.index]):
                continue
            if self.only_words is not None and unit.word_index not in self.only_words:
                continue
            for rule in unit.rules:
                if rule.family == family:
                    yield unit, rule

    def counts(self, unit_index: int, core: bool = False) -> float:
        """How many counts (harakat) the unit was held, at the reciter's local pace; ``core``:
        only its first sound (the held letter, without the vowel after it)."""
        timing = self.alignment.units[unit_index]
        seconds = self.held[unit_index]
        if core and self.alignment.core is not None:
            seconds = self.alignment.core[unit_index]
        return float(seconds / self.pace.for_unit(unit_index, timing.start).harakah_s)

    def span(self, unit_index: int) -> tuple[float, float]:
        """Where the unit sounds (s): its segment when the alignment has one."""
        if self.alignment.sound is not None:
            start, end = self.alignment.sound[unit_index]
            return (round(float(start), 3), round(float(end), 3))
        timing = self.alignment.units[unit_index]
        return (round(timing.start, 3), round(timing.start + float(self.held[unit_index]), 3))


UNTIMED_REACH_S = 0.5  # where nothing after a word is timed, a pause must begin this soon after it


def stops_after(ctx: AssessmentContext, unit) -> bool:
    """Whether the reciter paused right after the word of ``unit``, with ``unit`` at its end (its
    last unit, or the one before a last consonant that the stop leaves without its vowel): a
    stop inside the ayah, where tajweed treats the unit as at a waqf (a madd there, 'aared
    lil-sukun, may be held 2, 4 or 6 counts: ``ٱللَّهُ`` read ``Allaah`` before a breath). The end
    of the ayah is a stop too, and there the sound's end is where the recording's reverberation
    fades, not where the reciter let go."""
    word = ctx.reference.words[unit.word_index]
    last = word.units[1] - 1
    sound = ctx.alignment.sound
    if sound is None or unit.index < last - 1:
        return False
    if last + 1 >= len(ctx.reference.units):
        return True
    following = sound[last + 1, 0]
    if not np.isfinite(following):  # nothing timed after the word (a live stream at a pause): the
        # silence right after it, in the audio there is
        following = min(ctx.audio.size / ctx.sample_rate, sound[last, 1] + UNTIMED_REACH_S)
    return _paused_between(ctx, sound[last, 1], following)


def pauses_before(ctx: AssessmentContext, unit) -> bool:
    """Whether the reciter paused right before ``unit``, the first of its word: an idgham into
    this word then did not happen (the previous word ended at a stop), so it is not judged."""
    word = ctx.reference.words[unit.word_index]
    sound = ctx.alignment.sound
    if sound is None or unit.index != word.units[0] or unit.index == 0:
        return False
    return _paused_between(ctx, sound[unit.index - 1, 1], ctx.alignment.units[unit.index].start)


def _paused_between(ctx: AssessmentContext, a: float, b: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and ctx.edges.longest_silence(float(a), float(b)) >= PAUSE_S)
