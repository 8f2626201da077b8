"""Shadda: a doubled letter is held longer than the same syllable with a single letter.

A doubled consonant with its vowel should last well over one count; held no longer than a plain
short syllable, the doubling was dropped.
"""

from __future__ import annotations

import math

from .findings import AssessmentContext, RuleFinding

MIN_COUNTS = 0.6  # the doubled letter held under this many counts lost its shadda: ~p1 of correct ones (train)
EXPECTED_COUNTS = 1.3  # median of correct doubled letters (train calibration)
SIGMA_COUNTS = 0.4


def check_shadda(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    for unit, rule in ctx.units_with("shadda"):
        counts = ctx.counts(unit.index, core=True)
        if counts >= MIN_COUNTS:
            continue
        confidence = 1 - math.exp(-0.5 * ((EXPECTED_COUNTS - counts) / SIGMA_COUNTS) ** 2)
        findings.append(RuleFinding(
            rule_tag=rule.tag, problem="not_held", unit_index=unit.index, word_index=unit.word_index,
            time_range=ctx.span(unit.index), expected=EXPECTED_COUNTS, measured=round(counts, 1),
            severity="minor", confidence=round(confidence, 3), name_en=rule.name_en,
            name_ar=rule.name_ar))
    return findings
