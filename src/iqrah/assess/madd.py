"""Madd length: held counts against the expected harakat (natural 2; others per settings).

The measured length is the unit's held time divided by the reciter's local count. Reciters
differ and the measure is noisy, so a Gaussian around the expected length sets the confidence,
and only clear deviations are reported: a natural madd stretched to 4 counts, or a 4-6 count
madd cut to about 2.
"""

from __future__ import annotations

import math

from .findings import AssessmentContext, RuleFinding

#: counts a madd unit is measured at when held exactly as expected, relative to ``expected``;
#: the held time of a madd unit covers the lengthening only, not the vowel before it.
MEASURED_PER_EXPECTED = 0.85
SIGMA_COUNTS = 0.9  # spread of measured counts around the expected length, in counts
REPORT_AT = 0.8  # report a deviation when the confidence exceeds this


def check_madd(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    for unit, rule in ctx.units_with("madd"):
        expected = rule.harakat or 2
        counts = ctx.counts(unit.index) / MEASURED_PER_EXPECTED
        deviation = counts - expected
        # tolerance grows with the length: 4-6 count madds vary more between reciters
        sigma = SIGMA_COUNTS * (1 + 0.15 * (expected - 2))
        confidence = 1 - math.exp(-0.5 * (deviation / sigma) ** 2)
        if confidence < REPORT_AT or abs(deviation) < 1.0:
            continue
        findings.append(RuleFinding(
            rule_tag=rule.tag, problem="too_short" if deviation < 0 else "too_long",
            unit_index=unit.index, word_index=unit.word_index, time_range=ctx.span(unit.index),
            expected=expected, measured=round(counts, 1),
            severity="major" if abs(deviation) >= 2 else "minor", confidence=round(confidence, 3),
            name_en=rule.name_en, name_ar=rule.name_ar))
    return findings
