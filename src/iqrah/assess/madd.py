"""Madd length: held counts against the expected harakat (natural 2; others per settings).

The measured length is the madd's sound (with the short vowel it lengthens, pauses excluded)
divided by the reciter's own count, taken from their natural madds (see pace.py; a natural
madd itself is measured against its madds and short syllables together): natural madds measure
a median 2; correct 4-6 count madds measure a median 7.7 on professional recitations of the
train split (bench/calibrate_durations.py, iqrah-small, measured with the
audio as ``analyze`` does: the whole held vowel, which reciters hold longer against their
natural madds than the written counts say). Only clear deviations are reported: a natural
madd held about twice its usual length, or a long madd held like a natural one. A madd at a
stop is not judged, as 2, 4 and 6 counts are all allowed there: before the end of the ayah
('aared, a mottasel at the stop), at its very end, and where the reciter stops for breath
inside the ayah (``stops_after``).
"""

from __future__ import annotations

from .findings import AssessmentContext, RuleFinding, stops_after

NATURAL_TOO_LONG = 3.5  # counts; 1.5 % of correct natural madds (not at a stop) measure longer (train calibration)
LONG_TOO_SHORT = 2.2  # counts; a natural madd measures 2; correct 4-6 count madds a median 7.7, 12 / 74 under this
STOP_KINDS = ("aared", "mottasel_waqf")  # at a stop the reciter may choose 2, 4 or 6 counts


def check_madd(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    for unit, rule in ctx.units_with("madd"):
        expected = rule.harakat or 2
        if rule.kind in STOP_KINDS or stops_after(ctx, unit):
            continue  # at a stop, the end of the ayah or a breath inside it, 2, 4 or 6 are all allowed
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
