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
    """Seconds each unit sounds: the alignment's token segmentation where it has one, else from
    the unit's start to the next unit's start (last: to its end)."""
    if alignment.held is not None:
        return alignment.held
    starts = np.array([u.start for u in alignment.units])
    ends = np.array([u.end for u in alignment.units])
    held = np.empty_like(starts)
    held[:-1] = starts[1:] - starts[:-1]
    held[-1:] = ends[-1:] - starts[-1:]
    return np.maximum(held, 0.0)


def is_short_syllable(phonemes: str) -> bool:
    """One consonant and one short vowel, nothing held."""
    return len(phonemes) == 2 and phonemes[1] in SHORT_VOWELS and phonemes[0] not in SHORT_VOWELS


#: a natural madd lasts this many short-vowel segments per count (train split, iqrah-small:
#: natural madds median 2.5 short vowels for their 2 counts; bench/calibrate_durations.py)
SHORT_VOWELS_PER_COUNT = 1.25
MIN_MADDS = 3


class PaceTracker:
    """Count length at any moment of a recording, from the reciter's own natural madds (two
    counts each, the most frequent and most stable length they hold) in the ~10 s before it;
    with fewer than three of those, from their short vowels (``SHORT_VOWELS_PER_COUNT``).
    A natural madd itself is measured against both together (``for_unit``)."""

    def __init__(self, reference: Reference, alignment: ReferenceAlignment, held: np.ndarray,
                 earlier: dict[int, tuple[float, float]] | None = None):
        """``earlier``: unit -> (start, held seconds) measured before, for the units this
        alignment does not time (a live window starts a few words back; the madds before it
        still set the reciter's count, as they do for the final report)."""
        starts = np.array([u.start for u in alignment.units])
        if earlier:
            starts, held = starts.copy(), held.copy()
            for unit, (start, seconds) in earlier.items():
                if not np.isfinite(held[unit]):
                    starts[unit], held[unit] = start, seconds
        last_of_ayah = {max(i for i, u in enumerate(reference.units)
                            if reference.words[u.word_index].ayah == ayah)
                        for ayah in {w.ayah for w in reference.words}}
        self._natural = np.array([any(r.family == "madd" and r.harakat == 2 for r in u.rules)
                                  for u in reference.units])
        before_end = np.array([u.index + 1 not in last_of_ayah for u in reference.units])
        natural = self._natural & before_end & np.isfinite(held)
        self._madd_times, self._madd_counts = starts[natural], held[natural] / 2
        vowels = alignment.short_vowel if alignment.short_vowel is not None else held
        mask = np.array([is_short_syllable(u.phonemes) for u in reference.units]) & np.isfinite(vowels)
        times, durations = starts[mask], vowels[mask] * SHORT_VOWELS_PER_COUNT
        if durations.size:  # a syllable before a pause is stretched by the breath
            keep = durations < 2 * np.median(durations)
            times, durations = times[keep], durations[keep]
        self._times, self._durations = times, durations
        self._both = (np.concatenate([self._madd_times, times]), np.concatenate([self._madd_counts, durations]))

    @staticmethod
    def _median_near(times, values, t, minimum) -> tuple[float, int] | None:
        recent = (times <= t) & (times >= t - WINDOW_S)
        for chosen in (recent, np.ones_like(times, dtype=bool)):
            n = int(np.count_nonzero(chosen))
            if n >= minimum:
                return float(np.median(values[chosen])), n
        return None

    def at(self, t: float) -> Pace:
        for times, values, minimum in ((self._madd_times, self._madd_counts, MIN_MADDS),
                                       (self._times, self._durations, MIN_SAMPLES)):
            found = self._median_near(times, values, t, minimum)
            if found:
                return Pace(*found)
        return Pace(DEFAULT_HARAKAH_S, 0)

    def for_unit(self, unit_index: int, t: float) -> Pace:
        """The count to measure a unit with, at ``t``. A natural madd is one of the madds the
        count comes from: in an ayah with three or four of them, one held twice as long (the
        error to find) moved their median enough to hide itself. It is measured against its
        madds and short syllables together, whose median it barely moves (`iqrah eval mutations`,
        seeds 0-2: 165 of 210 lengthened natural madds found instead of 136; on train, 11 of 722
        correct ones over the 3.5-count line instead of 17). Other units keep ``at``: no error
        of theirs moves it, and learners' ghunnahs measured against their syllables were found
        short more often (TLOG: 7 more)."""
        if not self._natural[unit_index]:
            return self.at(t)
        found = self._median_near(*self._both, t, MIN_SAMPLES)
        return Pace(*found) if found else self.at(t)

    def overall(self) -> Pace:
        return self.at(float("inf"))
