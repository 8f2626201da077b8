"""Waqf: at the end of an ayah the reciter stops on a resting letter, without its final vowel.

The reference already has the stop form (the phonetizer drops the last vowel). If the free
decoding hears a short vowel after the last letter of an ayah, the reciter pronounced it.
"""

from __future__ import annotations

import numpy as np

from ..quran.rules import PH, Rule
from .content import Heard
from .findings import AssessmentContext, RuleFinding
from .pace import SHORT_VOWELS

WAQF = Rule("waqf", "sukun", None, "Stopping on a resting letter", "الوقف بالسكون")


def ayah_last_units(ctx: AssessmentContext) -> list[int]:
    last = {}
    for unit in ctx.reference.units:
        last[ctx.reference.words[unit.word_index].ayah] = unit.index
    return sorted(last.values())


def check_waqf(ctx: AssessmentContext, heard: Heard, frame_seconds: float) -> list[RuleFinding]:
    findings = []
    heard_times = heard.frames * frame_seconds
    units = ctx.alignment.units
    for index in ayah_last_units(ctx):
        unit = ctx.reference.units[index]
        if unit.word_index in ctx.skip_words or unit.phonemes[-1] in SHORT_VOWELS | {PH.qlqla}:
            continue
        start = units[index].start
        stop = units[index + 1].start if index + 1 < len(units) else np.inf
        after = [c for c, t in zip(heard.phonemes, heard_times) if start <= t < stop]
        last_letter = next((i for i in range(len(after) - 1, -1, -1) if after[i] == unit.phonemes[-1]), None)
        if last_letter is None:
            continue
        vowels = [c for c in after[last_letter + 1:] if c in SHORT_VOWELS]
        if vowels:
            findings.append(RuleFinding.at(ctx, unit, WAQF, "vowel_at_stop", expected=unit.phonemes,
                                           measured=unit.phonemes + vowels[0], severity="minor", confidence=0.7))
    return findings
