"""Feedback a learner can act on, in English and Arabic, one template per rule and problem."""

from __future__ import annotations

from ..assess.findings import RuleFinding
from .schema import Feedback

RULE_TEMPLATES = {
    ("madd", "too_short"): (
        "Hold this {name} for {expected} counts; you held about {measured}.",
        "{name_ar}: مُدَّه {expected} حركات؛ مددته نحو {measured}."),
    ("madd", "too_long"): (
        "This {name} takes {expected} counts; you held about {measured}.",
        "{name_ar}: مقداره {expected} حركات؛ مددته نحو {measured}."),
    ("ghunnah", "too_short"): (
        "{name}: hold the ghunnah through the nose for {expected} counts; you held about {measured}.",
        "{name_ar}: أظهر الغنة بمقدار {expected} حركات؛ كانت نحو {measured}."),
    ("ghunnah", "not_nasal"): (
        "{name}: let the ghunnah sound through the nose.",
        "{name_ar}: أخرج الغنة من الخيشوم."),
    ("qalqalah", "no_qalqalah"): (
        "{name}: let the letter echo; it was heard without its bounce.",
        "{name_ar}: أظهر القلقلة؛ سُمع الحرف بلا نبرة."),
    ("qalqalah", "no_burst"): (
        "{name}: let the letter echo, released with a clear bounce.",
        "{name_ar}: أظهر القلقلة بنبرة واضحة عند النطق بالحرف الساكن."),
    ("shadda", "not_held"): (
        "This letter has a shadda: hold it doubled before the vowel.",
        "هذا الحرف مشدد: أعطه حقه من التشديد."),
    ("waqf", "vowel_at_stop"): (
        "Stop on a resting letter at the end of the ayah, without the final vowel.",
        "قف على آخر الآية بالسكون دون تحريك الحرف الأخير."),
}

CONTENT_TEMPLATES = {
    "missing": ("You skipped «{word}».", "لم تقرأ «{word}»."),
    "substituted": ("«{word}» did not sound right: listen and repeat it.", "لم تُقرأ «{word}» كما ينبغي: استمع وأعدها."),
    "repeated": ("You repeated «{word}».", "كررت «{word}»."),
    "extra": ("You added words after «{word}» that are not in this ayah.", "زدت بعد «{word}» ما ليس في الآية."),
}


def rule_feedback(finding: RuleFinding) -> Feedback:
    family = finding.rule_tag.split(":")[0]
    en, ar = RULE_TEMPLATES.get((family, finding.problem), (
        "Check the {name} here.", "راجع ({name_ar}) هنا."))
    values = {"name": finding.name_en or finding.rule_tag, "name_ar": finding.name_ar or finding.rule_tag,
              "expected": _fmt(finding.expected), "measured": _fmt(finding.measured)}
    return Feedback(en=en.format(**values), ar=ar.format(**values))


PROSODY_TEMPLATES = {
    "rushed": ("You rushed «{word}»: give it the time the reference reciter gives it.",
               "أسرعت في «{word}»: أعطها من الوقت ما يعطيها القارئ."),
    "slow": ("You drew out «{word}» longer than the reference reciter.", "أطلت «{word}» أكثر من القارئ."),
    "falls_where_reference_rises": ("Your voice fell on «{word}» where the reference rises.",
                                    "انخفض صوتك في «{word}» حيث يرتفع صوت القارئ."),
    "rises_where_reference_falls": ("Your voice rose on «{word}» where the reference falls.",
                                    "ارتفع صوتك في «{word}» حيث ينخفض صوت القارئ."),
}


def prosody_feedback(finding: str, word: str) -> Feedback:
    en, ar = PROSODY_TEMPLATES[finding]
    return Feedback(en=en.format(word=word), ar=ar.format(word=word))


def content_feedback(kind: str, word: str) -> Feedback:
    en, ar = CONTENT_TEMPLATES[kind]
    return Feedback(en=en.format(word=word), ar=ar.format(word=word))


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
