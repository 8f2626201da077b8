"""Ghunnah (doubled noon/meem, idgham with ghunnah, ikhfaa, iqlab): held about two counts, nasal.

The held time comes from the alignment: a CTC model fires at the release of the held nasal, so
the nasal is measured from just after the spike before it (``align.words._hold_starts``), which
also takes in the end of the vowel before: correct ghunnahs of professional reciters measure a
median 5.1 of the reciter's counts (train split, ``bench/calibrate_durations.py``), hence
``MEASURED_PER_COUNT``. A ghunnah held under ``SHORT_AT`` counts was cut short; when it still
sounded nasal (share of energy below 400 Hz above the reciter's plain syllables) the finding
is less certain.
"""

from __future__ import annotations

import math

import numpy as np

from .findings import AssessmentContext, RuleFinding, pauses_before
from .pace import is_short_syllable
from .signal import low_band_ratio

EXPECTED_COUNTS = 2.0
MEASURED_PER_COUNT = 2.5  # a correct 2-count ghunnah measures a median 5.1 counts (train)
SHORT_AT = 1.0  # counts below which a ghunnah was cut: ~p2 of correct ones (train: p1 2.1, p5 3.05 measured)
SIGMA_COUNTS = 0.6
MIN_MEASURABLE_S = 0.05  # one 40 ms frame and a little: no duration can be read from it


def nasal_baseline(ctx: AssessmentContext) -> float:
    spans = [ctx.span(u.index) for u in ctx.reference.units[:200] if is_short_syllable(u.phonemes)]
    ratios = [low_band_ratio(ctx.audio, ctx.sample_rate, *span) for span in spans
              if np.isfinite(span).all()]  # a live stream has not reached every unit yet
    return float(np.median(ratios)) if ratios else 0.3


def check_ghunnah(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    baseline = None
    # the alignment's held letters take in the vowel before (see above); plain unit timings do not
    per_count = MEASURED_PER_COUNT if ctx.alignment.core is not None else 1.0
    for unit, rule in ctx.units_with("ghunnah"):
        counts = ctx.counts(unit.index, core=True) / per_count
        if counts >= SHORT_AT:
            continue
        if rule.kind.startswith("idgham") and pauses_before(ctx, unit):
            continue  # a stop between the two words: there was nothing to merge
        if ctx.alignment.core is not None and ctx.alignment.core[unit.index] <= MIN_MEASURABLE_S:
            continue  # a single frame: the alignment could not measure this nasal at all
        baseline = nasal_baseline(ctx) if baseline is None else baseline
        nasal = low_band_ratio(ctx.audio, ctx.sample_rate, *ctx.span(unit.index))
        confidence = 1 - math.exp(-0.5 * ((EXPECTED_COUNTS - counts) / SIGMA_COUNTS) ** 2)
        if nasal > baseline:  # short, but it sounded nasal: less sure
            confidence *= 0.7
        findings.append(RuleFinding.at(ctx, unit, rule, "too_short", expected=EXPECTED_COUNTS,
                                       measured=round(counts, 1), severity="major" if counts < 0.6 else "minor",
                                       confidence=confidence))
    return findings
