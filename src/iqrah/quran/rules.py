"""Tajweed rules carried by a phoneme unit, named the way feedback talks about them.

Madd kinds and qalqalah come from the rules ``quran-transcript`` attaches to its mappings.
Ghunnah, idgham, ikhfaa and iqlab are not attached there, but the phonetizer writes them into
the phonemes themselves (a held nasal is a run of three or more noon/meem letters, ikhfaa has
its own letter, idgham doubles the next letter), so they are read from the unit and from the
Uthmani letters it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from quran_transcript import alphabet as alph

PH = alph.phonetics
UTH = alph.uthmani

GHUNNAH_HARAKAT = 2  # a ghunnah is held for two counts in every kind that has one
SAKT_HARAKAT = 2

NOON_SOURCES = {UTH.noon, UTH.tanween_fath, UTH.tanween_dam, UTH.tanween_kasr,
                UTH.tanween_idhaam_dterminer, UTH.meem_iqlab}


@dataclass(frozen=True)
class Rule:
    """One tajweed rule on one phoneme unit.

    ``family`` groups rules a validator checks the same way (madd, ghunnah, qalqalah, idgham,
    sakt); ``kind`` is the specific rule; ``harakat`` the expected length in counts where the
    rule has one.
    """

    family: str
    kind: str
    harakat: int | None
    name_en: str
    name_ar: str

    @property
    def tag(self) -> str:
        return f"{self.family}:{self.kind}"


MADD_KINDS = {
    "NormalMaddRule": ("natural", "Natural madd", "المد الطبيعي"),
    "MonfaselMaddRule": ("monfasel", "Separated madd (monfasel)", "المد المنفصل"),
    "MottaselMaddRule": ("mottasel", "Connected madd (mottasel)", "المد المتصل"),
    "MottaselMaddPauseRule": ("mottasel_waqf", "Connected madd at a stop", "المد المتصل وقفا"),
    "LazemMaddRule": ("lazem", "Necessary madd (lazem)", "المد اللازم"),
    "AaredMaddRule": ("aared", "Madd before a stop (aared)", "المد العارض للسكون"),
    "LeenMaddRule": ("leen", "Leen madd", "مد اللين"),
}
_NATURAL_REFINED = {
    "badal": ("Substitute madd (badal)", "مد البدل"),
    "iwad": ("Compensation madd (iwad)", "مد العوض"),
    "silah": ("Connecting madd (silah)", "مد الصلة"),
}

_GHUNNAH = {
    "mushaddadah": ("Ghunnah of a doubled noon or meem", "غنة النون والميم المشددتين"),
    "idgham": ("Merging with ghunnah (idgham)", "إدغام بغنة"),
    "idgham_shafawi": ("Lip merging of meem (idgham shafawi)", "إدغام شفوي"),
    "ikhfaa": ("Hiding the noon (ikhfaa)", "إخفاء حقيقي"),
    "ikhfaa_shafawi": ("Hiding the meem (ikhfaa shafawi)", "إخفاء شفوي"),
    "iqlab": ("Turning noon into meem (iqlab)", "إقلاب"),
}

QALQALAH_SUGHRA = Rule("qalqalah", "sughra", None, "Echo on a resting letter (qalqalah)", "قلقلة صغرى")
QALQALAH_KUBRA = Rule("qalqalah", "kubra", None, "Echo at a stop (qalqalah kubra)", "قلقلة كبرى")
IDGHAM_NO_GHUNNAH = Rule("idgham", "without_ghunnah", None, "Merging without ghunnah", "إدغام بغير غنة")
SAKT = Rule("sakt", "sakt", SAKT_HARAKAT, "Brief pause without breath (sakt)", "سكت")
SHADDA = Rule("shadda", "shadda", None, "Doubled letter (shadda)", "الحرف المشدد")
MADD_LETTERS = {PH.alif, PH.waw_madd, PH.yaa_madd, PH.alif_momala}


def madd_rule(class_name: str, golden_len: int, *, after_hamza: bool, source_chars: str) -> Rule:
    """A madd rule from the phonetizer's class, refining natural madd into badal/iwad/silah."""
    kind, en, ar = MADD_KINDS[class_name]
    if kind == "natural":
        if UTH.tanween_fath in source_chars:
            kind, (en, ar) = "iwad", _NATURAL_REFINED["iwad"]
        elif after_hamza:
            kind, (en, ar) = "badal", _NATURAL_REFINED["badal"]
        elif UTH.small_waw in source_chars or UTH.small_yaa_sila in source_chars:
            kind, (en, ar) = "silah", _NATURAL_REFINED["silah"]
    return Rule("madd", kind, golden_len, en, ar)


def ghunnah_rule(kind: str) -> Rule:
    en, ar = _GHUNNAH[kind]
    return Rule("ghunnah", kind, GHUNNAH_HARAKAT, en, ar)


def sound_rules(phonemes: str, *, source_chars: str, merged_from_previous_word: str,
                is_last: bool) -> list[Rule]:
    """Rules visible in the unit's own phonemes: ghunnah kinds, idgham, qalqalah, sakt.

    ``merged_from_previous_word`` holds the Uthmani letters of the previous word that the
    phonetizer deleted right where this unit starts (an idgham swallows them).
    """
    rules: list[Rule] = []
    core = phonemes[0]
    run = len(phonemes) - len(phonemes.lstrip(core))
    from_noon = any(c in NOON_SOURCES for c in merged_from_previous_word)
    from_meem = UTH.meem in merged_from_previous_word
    if core == PH.noon_mokhfah:
        rules.append(ghunnah_rule("ikhfaa"))
    elif core == PH.meem_mokhfah:
        iqlab = any(c in NOON_SOURCES for c in source_chars)
        rules.append(ghunnah_rule("iqlab" if iqlab else "ikhfaa_shafawi"))
    elif core in (PH.noon, PH.meem) and run >= 3:
        if from_noon:
            rules.append(ghunnah_rule("idgham"))
        elif from_meem and core == PH.meem:
            rules.append(ghunnah_rule("idgham_shafawi"))
        else:
            rules.append(ghunnah_rule("mushaddadah"))
    elif core in (PH.yaa, PH.waw) and run >= 3:
        rules.append(ghunnah_rule("idgham"))
    elif core in (PH.lam, PH.raa) and from_noon:
        rules.append(IDGHAM_NO_GHUNNAH)
    elif run == 2 and core not in MADD_LETTERS:
        rules.append(SHADDA)
    if phonemes.endswith(PH.qlqla):
        rules.append(QALQALAH_KUBRA if is_last else QALQALAH_SUGHRA)
    if phonemes.endswith(PH.sakt):
        rules.append(SAKT)
    return rules
