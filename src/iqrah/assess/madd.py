"""Madd length: held counts against the expected harakat (natural 2; others per settings).

The measured length is the madd's sound (with the short vowel it lengthens) divided by the
reciter's own count, taken from their natural madds (see pace.py): a natural madd measures 2 by
construction, and correct 4-6 count madds measured about 7 on professional recitations of the
train split (reciters hold long madds longer than twice a natural one). Only clear deviations are
reported: a natural madd stretched to about twice its usual length, or a long madd no longer than
a natural one.
"""

from __future__ import annotations

from .findings import AssessmentContext, RuleFinding

NATURAL_TOO_LONG = 4.5  # counts; ~2 % of correct natural madds measure longer (train calibration)
LONG_TOO_SHORT = 2.8  # counts; a madd of 4-6 measured under this was held like a natural one


def check_madd(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    for unit, rule in ctx.units_with("madd"):
        expected = rule.harakat or 2
        counts = ctx.counts(unit.index)
        if expected <= 2 and counts > NATURAL_TOO_LONG:
            problem, excess = "too_long", (counts - NATURAL_TOO_LONG) / NATURAL_TOO_LONG
        elif expected >= 4 and counts < LONG_TOO_SHORT:
            problem, excess = "too_short", (LONG_TOO_SHORT - counts) / LONG_TOO_SHORT
        else:
            continue
        confidence = min(1.0, 0.6 + excess)
        findings.append(RuleFinding.at(ctx, unit, rule, problem, expected=expected, measured=round(counts, 1),
                                       severity="major" if abs(counts - expected) >= 2 else "minor",
                                       confidence=confidence))
    return findings
