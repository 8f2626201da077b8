"""Sifat verdicts from a model with sifat heads (the muaalem backend): for every phoneme unit,
what each head heard against what the reference expects, and violations where a tajweed rule's
defining sifa is missing (no nasality on a ghunnah, no echo on a qalqalah letter).

The heads are CTC outputs like the phoneme head: a label fires somewhere inside its phoneme
group. For each unit, the most probable non-blank label over the unit's frames is what was heard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..acoustic.vocab import sifa_labels
from .findings import AssessmentContext, RuleFinding

RULE_SIFA = {"ghunnah": ("ghonna", "maghnoon", "not_nasal"), "qalqalah": ("qalqla", "moqalqal", "no_qalqalah")}
MIN_PROBABILITY = 0.8  # report a missing sifa only when the head is this sure of the other label


@dataclass(frozen=True)
class SifaVerdict:
    expected: str
    predicted: str
    probability: float

    @property
    def match(self) -> bool:
        return self.expected == self.predicted


def unit_sifat(ctx: AssessmentContext, sifat: dict[str, np.ndarray], frame_seconds: float,
               offset_s: float) -> dict[int, dict[str, SifaVerdict]]:
    out: dict[int, dict[str, SifaVerdict]] = {}
    for unit in ctx.reference.units:
        start, end = ctx.span(unit.index)
        if not np.isfinite(start):
            continue
        a = max(0, int((start - offset_s) / frame_seconds))
        b = max(a + 1, int(np.ceil((end - offset_s) / frame_seconds)))
        verdicts = {}
        for level, log_probs in sifat.items():
            window = np.exp(log_probs[a:b])
            if window.size == 0:
                continue
            labels = sifa_labels(level)
            frame, token = np.unravel_index(np.argmax(window[:, 1:]), window[:, 1:].shape)
            verdicts[level] = SifaVerdict(unit.sifat[level], labels[min(token, len(labels) - 1)],
                                          round(float(window[frame, token + 1]), 3))
        out[unit.index] = verdicts
    return out


def check_sifat(ctx: AssessmentContext, verdicts: dict[int, dict[str, SifaVerdict]]) -> list[RuleFinding]:
    findings = []
    for family, (level, expected, problem) in RULE_SIFA.items():
        for unit, rule in ctx.units_with(family):
            verdict = verdicts.get(unit.index, {}).get(level)
            if verdict is None or verdict.predicted == expected or verdict.probability < MIN_PROBABILITY:
                continue
            findings.append(RuleFinding.at(ctx, unit, rule, problem, expected=expected, measured=verdict.predicted,
                                           severity="minor", confidence=verdict.probability))
    return findings
