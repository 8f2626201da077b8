"""One judge for the live stream and the final report.

Both ask the same two questions of a word: what did the content check find (missing, said as
another word, or as written), and what did the tajweed validators find on its sounds. The
answers come from here, so a live verdict and a final verdict can differ only because they
heard different audio (a window of the stream against the whole recording), never because of
different rules. The report turns findings into violations (``report.build.violation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from Levenshtein import editops

from ..align.words import ReferenceAlignment
from ..quran import Reference
from .content import FIT_MAX_GOP, FIT_MAX_KEPT, ContentResult, Heard
from .findings import AssessmentContext, RuleFinding
from .ghunnah import check_ghunnah
from .madd import check_madd
from .qalqalah import check_qalqalah
from .shadda import check_shadda
from .sifat import check_sifat, unit_sifat
from .waqf import check_waqf

@dataclass
class Judgement:
    """What the judge found in one recording, for the report to present."""

    reference: Reference
    content: ContentResult
    gate_per: float
    matches: bool  # the recording passed the content gate: it is this ayah
    aligned: ReferenceAlignment | None
    offset_s: float  # where the audio the model heard starts in the recording
    frame_seconds: float
    findings: list[RuleFinding] = field(default_factory=list)
    sifat: dict = field(default_factory=dict)  # unit index -> level -> SifaVerdict
    pace: dict[str, float] = field(default_factory=dict)
    context: AssessmentContext | None = None  # what the validators measured on (held sounds, pace)


def run_validators(ctx: AssessmentContext, *, heard: Heard | None = None, frame_seconds: float = 0.0,
                   sifat_heads: dict | None = None, offset_s: float = 0.0) -> tuple[list[RuleFinding], dict]:
    """The tajweed validators on the words ``ctx`` names, in time order, and the per-unit sifat
    verdicts. The stops at the ayah's end (waqf) are judged only given ``heard``, the free
    decoding of the whole recording (its frames counted from the recording's start); the
    sifat only given a model's sifat heads (``offset_s``: where the audio they heard starts)."""
    findings = check_madd(ctx) + check_ghunnah(ctx) + check_qalqalah(ctx) + check_shadda(ctx)
    if heard is not None:
        findings += check_waqf(ctx, heard, frame_seconds)
    sifat = {}
    if sifat_heads is not None:
        sifat = unit_sifat(ctx, sifat_heads, frame_seconds, offset_s)
        findings += check_sifat(ctx, sifat)
    findings.sort(key=lambda f: (f.time_range[0], f.rule_tag))
    return findings, sifat


def word_content(expected: str, said: str, fit: float | None, line: float = FIT_MAX_GOP) -> str | None:
    """What the stream's content check makes of one word from the free decoding of its stretch
    (``said``, against its phonemes with runs collapsed, ``expected``) and the forced alignment's
    fit of it (``word_fits``: None where it placed none of the word), by the rule
    ``judge_words_by_fit`` applies to a whole recording: a word heard less than FIT_MAX_KEPT is
    wrong only where the expected phonemes fit its frames under ``line`` (``fit_line`` of the
    reciter's words); then ``missing`` (nothing heard there) or ``substituted``. None: said as
    written."""
    edits = editops(expected, said)
    kept = 1 - sum(op != "insert" for op, _, _ in edits) / max(len(expected), 1)
    if kept >= FIT_MAX_KEPT or (fit is not None and fit >= line):
        return None
    return "substituted" if said else "missing"


def word_verdict(content_kind: str | None, assessed: bool, rule_broken: bool) -> str:
    """A word's verdict: a content finding first (missing, substituted), then ``not_assessed``
    where the recording failed the content gate, then whether a tajweed rule was broken."""
    if content_kind == "missing":
        return "missing"
    if content_kind == "substituted":
        return "content_error"
    if not assessed:
        return "not_assessed"
    return "tajweed_error" if rule_broken else "correct"


def shift(heard: Heard, offset_s: float, frame_seconds: float) -> Heard:
    """``heard`` with its frames counted from the recording's start, not from ``offset_s``."""
    return Heard(heard.phonemes, heard.frames + int(round(offset_s / frame_seconds)))

