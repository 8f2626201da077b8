"""Madd length: held counts against the expected harakat (natural 2; others per settings).

The measured length is the madd's sound (with the short vowel it lengthens, pauses excluded)
divided by the reciter's own count, taken from their natural madds (see pace.py): a natural madd
measures 2 by construction; correct 4-6 count madds measure a median 3.1 on professional
recitations of the train split (bench/calibrate_durations.py, iqrah-small): the alignment's 40 ms
spikes compress long vowels. Only clear deviations are reported: a natural madd held about twice
its usual length, or a long madd (not at a stop, where 2-6 are all allowed) held like a natural one.
"""

from __future__ import annotations

from .findings import AssessmentContext, RuleFinding

NATURAL_TOO_LONG = 3.8  # counts; ~1 % of correct natural madds measure longer (train calibration)
LONG_TOO_SHORT = 1.8  # counts; correct 4-6 count madds measure a median 3.1, ~8 % under this
STOP_KINDS = ("aared", "mottasel_waqf")  # at a stop the reciter may choose 2, 4 or 6 counts


def check_madd(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    for unit, rule in ctx.units_with("madd"):
        expected = rule.harakat or 2
        counts = ctx.counts(unit.index)
        if expected <= 2 and counts > NATURAL_TOO_LONG:
            problem, excess = "too_long", (counts - NATURAL_TOO_LONG) / NATURAL_TOO_LONG
        elif expected >= 4 and counts < LONG_TOO_SHORT and rule.kind not in STOP_KINDS:
            problem, excess = "too_short", (LONG_TOO_SHORT - counts) / LONG_TOO_SHORT
        else:
            continue
        confidence = min(1.0, 0.6 + excess)
        findings.append(RuleFinding.at(ctx, unit, rule, problem, expected=expected, measured=round(counts, 1),
                                       severity="major" if abs(counts - expected) >= 2 else "minor",
                                       confidence=confidence))
    return findings
