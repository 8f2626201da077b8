"""Ghunnah (doubled noon/meem, idgham with ghunnah, ikhfaa, iqlab): held about two counts, nasal.

The held time comes from the alignment, as for madd. Nasality is the share of energy below
400 Hz compared with the reciter's own short syllables: a ghunnah pushed through the nose keeps
its energy low. A ghunnah is reported only when both say so: held under ``SHORT_AT`` counts and no more
nasal than the reciter's plain syllables (the 40 ms alignment alone mismeasures short nasals).
"""

from __future__ import annotations

import math

import numpy as np

from .findings import AssessmentContext, RuleFinding
from .pace import is_short_syllable
from .signal import low_band_ratio

EXPECTED_COUNTS = 2.0
MEASURED_PER_COUNT = 1.0  # held ghunnah units cover the nasal sound and the vowel after it
SHORT_AT = 0.8  # counts (held nasal alone) below which a ghunnah was cut: ~p1 of correct ones (train)
SIGMA_COUNTS = 0.6
MIN_MEASURABLE_S = 0.05  # one 40 ms frame and a little: no duration can be read from it


def nasal_baseline(ctx: AssessmentContext) -> float:
    ratios = [low_band_ratio(ctx.audio, ctx.sample_rate, *ctx.span(u.index))
              for u in ctx.reference.units[:200] if is_short_syllable(u.phonemes)]
    return float(np.median(ratios)) if ratios else 0.3


def check_ghunnah(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    baseline = None
    for unit, rule in ctx.units_with("ghunnah"):
        counts = ctx.counts(unit.index, core=True) / MEASURED_PER_COUNT
        if counts >= SHORT_AT:
            continue
        if ctx.alignment.core is not None and ctx.alignment.core[unit.index] <= MIN_MEASURABLE_S:
            continue  # a single frame: the alignment could not measure this nasal at all
        baseline = nasal_baseline(ctx) if baseline is None else baseline
        nasal = low_band_ratio(ctx.audio, ctx.sample_rate, *ctx.span(unit.index))
        if nasal > baseline:  # short by the alignment, but it sounded nasal: not enough to report
            continue
        confidence = 1 - math.exp(-0.5 * ((EXPECTED_COUNTS - counts) / SIGMA_COUNTS) ** 2)
        findings.append(RuleFinding.at(ctx, unit, rule, "too_short", expected=EXPECTED_COUNTS,
                                       measured=round(counts, 1), severity="major" if counts < 0.6 else "minor",
                                       confidence=confidence))
    return findings
