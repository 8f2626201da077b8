"""Qalqalah (qaf, taa, baa, jeem, dal at rest): a closure followed by an audible release burst.

Within the unit (and a little after it) the energy must dip for the stop's closure and then
rise again in a burst. A release less than ``MIN_BURST_DB`` above the closure means the letter
was swallowed without its echo. The line was not set on data: on professional recitations of
the train split 9 of 106 correct sughra qalqalahs measure under it (``bench/calibrate_durations.py``,
two samples of 150 files); a finer measure of the release is needed before it can be lowered
without missing swallowed ones.

A qalqalah kubra at the very end of the recording is not judged: there the release is hidden in
the recording's reverberation or cut off with its end. On train (``bench/calibrate_durations.py
--ending-in-qalqalah --files 80``), 22 of 59 correct ones by professional reciters measure under
the line; seeking the release up to where the sound stops still leaves about a fifth under it,
which would tell every fifth learner who recites correctly that they swallowed it.
"""

from __future__ import annotations

import numpy as np

from .findings import AssessmentContext, RuleFinding
from .signal import energy_db

MIN_BURST_DB = 6.0
AFTER_S = 0.08


def burst_db(ctx: AssessmentContext, unit_index: int) -> float | None:
    start, end = ctx.span(unit_index)
    energy = energy_db(ctx.audio, ctx.sample_rate, start, end + AFTER_S)
    if energy.size < 6:
        return None
    closure = int(np.argmin(energy[: max(2, energy.size * 2 // 3)]))
    return float(energy[closure:].max() - energy[closure])


def check_qalqalah(ctx: AssessmentContext) -> list[RuleFinding]:
    findings = []
    last = len(ctx.reference.units) - 1
    for unit, rule in ctx.units_with("qalqalah"):
        if rule.kind == "kubra" and unit.index == last:
            continue  # the recording's end hides the release (see above)
        burst = burst_db(ctx, unit.index)
        if burst is None or burst >= MIN_BURST_DB:
            continue
        confidence = float(np.clip((MIN_BURST_DB - burst) / MIN_BURST_DB, 0.0, 1.0))
        findings.append(RuleFinding.at(ctx, unit, rule, "no_burst", expected=f">= {MIN_BURST_DB:.0f} dB release",
                                       measured=f"{burst:.1f} dB", severity="minor", confidence=confidence))
    return findings
