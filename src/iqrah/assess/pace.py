"""The reciter's own pace: how long one haraka (count) lasts for them, and how long units are held.

A CTC model fires briefly inside a sound and emits blanks while the sound goes on, so the time a
unit is held runs from its first token to the first token of the next unit. A syllable of one
consonant and one short vowel lasts about one count; the median of those in the ~10 s before a
unit is the reciter's count there (people speed up and slow down within an ayah).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..align.words import ReferenceAlignment
from ..quran import Reference
from ..quran.rules import PH

SHORT_VOWELS = {PH.fatha, PH.dama, PH.kasra}
WINDOW_S = 10.0
MIN_SAMPLES = 5
DEFAULT_HARAKAH_S = 0.2  # a typical murattal count, used until enough syllables are heard


@dataclass(frozen=True)
class Pace:
    harakah_s: float
    samples: int


def held_durations(alignment: ReferenceAlignment) -> np.ndarray:
    """Seconds each unit is held: from its start to the next unit's start (last: to its end)."""
    starts = np.array([u.start for u in alignment.units])
    ends = np.array([u.end for u in alignment.units])
    held = np.empty_like(starts)
    held[:-1] = starts[1:] - starts[:-1]
    held[-1:] = ends[-1:] - starts[-1:]
    return np.maximum(held, 0.0)


def is_short_syllable(phonemes: str) -> bool:
    """One consonant and one short vowel, nothing held."""
    return len(phonemes) == 2 and phonemes[1] in SHORT_VOWELS and phonemes[0] not in SHORT_VOWELS


class PaceTracker:
    """Count length at any moment of a recording, from the short syllables around it."""

    def __init__(self, reference: Reference, alignment: ReferenceAlignment, held: np.ndarray):
        mask = np.array([is_short_syllable(u.phonemes) for u in reference.units]) & np.isfinite(held)
        # a syllable before a pause is stretched by the breath: keep those within 2x the median
        times = np.array([u.start for u in alignment.units])[mask]
        durations = held[mask]
        if durations.size:
            keep = durations < 2 * np.median(durations)
            times, durations = times[keep], durations[keep]
        self._times, self._durations = times, durations

    def at(self, t: float) -> Pace:
        recent = (self._times <= t) & (self._times >= t - WINDOW_S)
        if np.count_nonzero(recent) < MIN_SAMPLES:
            recent = np.ones_like(self._times, dtype=bool)
        if np.count_nonzero(recent) < MIN_SAMPLES:
            return Pace(DEFAULT_HARAKAH_S, int(np.count_nonzero(recent)))
        return Pace(float(np.median(self._durations[recent])), int(np.count_nonzero(recent)))

    def overall(self) -> Pace:
        if self._durations.size < MIN_SAMPLES:
            return Pace(DEFAULT_HARAKAH_S, int(self._durations.size))
        return Pace(float(np.median(self._durations)), int(self._durations.size))
