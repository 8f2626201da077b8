"""Shadda: a doubled letter is held longer than the same letter single.

Its held letter (up to its vowel) is compared with the same consonant in the reciter's plain
consonant + short vowel syllables of the recording (or, without one, with all of them): both are
measured the same way, so what the alignment does to stops and fricatives cancels out. Held no
longer than a single one, the doubling was dropped.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .findings import AssessmentContext, RuleFinding
from .pace import is_short_syllable

MIN_RATIO = 0.75  # doubled / single length under this: the shadda was not held (~p2 of correct ones, train)
EXPECTED_RATIO = 1.6


def single_letter_seconds(ctx: AssessmentContext) -> tuple[dict[str, float], float | None]:
    """Median held length of each consonant when single (CV syllables), and over all of them."""
    core = ctx.alignment.core if ctx.alignment.core is not None else ctx.held
    by_letter: dict[str, list[float]] = defaultdict(list)
    for unit in ctx.reference.units:
        if is_short_syllable(unit.phonemes) and np.isfinite(core[unit.index]):
            by_letter[unit.phonemes[0]].append(float(core[unit.index]))
    every = [v for values in by_letter.values() for v in values]
    return ({k: float(np.median(v)) for k, v in by_letter.items()},
            float(np.median(every)) if every else None)


def check_shadda(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    singles, overall = None, None
    core = ctx.alignment.core if ctx.alignment.core is not None else ctx.held
    for unit, rule in ctx.units_with("shadda"):
        if singles is None:
            singles, overall = single_letter_seconds(ctx)
        single = singles.get(unit.phonemes[0], overall)
        if not single or not np.isfinite(core[unit.index]):
            continue
        ratio = float(core[unit.index]) / single
        if ratio >= MIN_RATIO:
            continue
        confidence = min(1.0, 0.6 + (MIN_RATIO - ratio) / MIN_RATIO)
        findings.append(RuleFinding.at(ctx, unit, rule, "not_held", expected=f"{EXPECTED_RATIO}x the single letter",
                                       measured=f"{ratio:.1f}x", severity="minor", confidence=confidence))
    return findings
