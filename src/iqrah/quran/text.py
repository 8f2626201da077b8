"""The Uthmani text of the Quran and the ayah specs users type (``2:255``, ``2:255-257``, ``2:255:3-7``).

The text is the one bundled with ``quran-transcript``; it is read once per process because
``quran_transcript.Aya`` re-reads its 8 MB JSON file on every construction otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from quran_transcript import Aya

SURAH_COUNT = 114
BASMALA_SURAH = 1  # in Al-Fatiha the basmala is ayah 1; elsewhere (but surah 9) it precedes ayah 1
NO_BASMALA_SURAH = 9

SPEC_FORMS = "SURAH:AYAH, SURAH:AYAH-AYAH or SURAH:AYAH:WORD[-WORD]"


class UnknownAyahError(ValueError):
    """An ayah spec that does not name text of the Quran; the message says what is valid."""


@dataclass(frozen=True)
class AyahSpec:
    """What a user asked for: ayahs ``ayah``..``ayah_end`` of ``surah``, or words of one ayah.

    ``word_start``/``word_end`` are 1-based and inclusive, and only set for a word span.
    """

    surah: int
    ayah: int
    ayah_end: int
    word_start: int | None = None
    word_end: int | None = None

    def __str__(self) -> str:
        if self.word_start is not None:
            words = f"{self.word_start}" if self.word_start == self.word_end else f"{self.word_start}-{self.word_end}"
            return f"{self.surah}:{self.ayah}:{words}"
        if self.ayah_end != self.ayah:
            return f"{self.surah}:{self.ayah}-{self.ayah_end}"
        return f"{self.surah}:{self.ayah}"

    @property
    def ayahs(self) -> range:
        return range(self.ayah, self.ayah_end + 1)


@cache
def _quran_dict() -> dict:
    return Aya(1, 1).quran_dict


@cache
def ayah_count(surah: int) -> int:
    """Number of ayahs in ``surah`` (1..114)."""
    _check_surah(surah)
    return Aya(surah, 1, quran_dict=_quran_dict()).get().num_ayat_in_sura


def total_ayahs() -> int:
    return sum(ayah_count(s) for s in range(1, SURAH_COUNT + 1))


@cache
def surah_name_ar(surah: int) -> str:
    _check_surah(surah)
    return Aya(surah, 1, quran_dict=_quran_dict()).get().sura_name


def ayah_text(surah: int, ayah: int) -> str:
    """The Uthmani text of one ayah, words separated by single spaces."""
    _check_ayah(surah, ayah)
    return Aya(surah, ayah, quran_dict=_quran_dict()).get().uthmani


def ayah_words(surah: int, ayah: int) -> list[str]:
    return ayah_text(surah, ayah).split()


def basmala_text() -> str:
    """The basmala as it stands before the first ayah of every surah but 1 and 9."""
    return Aya(2, 1, quran_dict=_quran_dict()).get().bismillah_uthmani


def has_separate_basmala(surah: int) -> bool:
    """Whether a recitation of ayah 1 of this surah usually begins with a basmala that is not an ayah."""
    return surah not in (BASMALA_SURAH, NO_BASMALA_SURAH)


_SPEC_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*(?:-\s*(\d+)|:\s*(\d+)\s*(?:-\s*(\d+))?)?\s*$")


def parse_spec(text: str) -> AyahSpec:
    """Parse and validate a spec; raise UnknownAyahError naming the valid range otherwise."""
    match = _SPEC_RE.match(text)
    if not match:
        raise UnknownAyahError(f"cannot read {text!r}: expected {SPEC_FORMS}, surah 1-{SURAH_COUNT}")
    surah, ayah, ayah_end, word_start, word_end = (int(g) if g else None for g in match.groups())
    _check_surah(surah)
    _check_ayah(surah, ayah)
    if word_start is not None:
        word_end = word_end if word_end is not None else word_start
        n_words = len(ayah_words(surah, ayah))
        if not 1 <= word_start <= word_end <= n_words:
            raise UnknownAyahError(
                f"no words {word_start}-{word_end} in {surah}:{ayah}: it has words 1-{n_words}"
            )
        return AyahSpec(surah, ayah, ayah, word_start, word_end)
    if ayah_end is not None:
        _check_ayah(surah, ayah_end)
        if ayah_end < ayah:
            raise UnknownAyahError(f"range {surah}:{ayah}-{ayah_end} ends before it starts")
        return AyahSpec(surah, ayah, ayah_end)
    return AyahSpec(surah, ayah, ayah)


def _check_surah(surah: int) -> None:
    if not 1 <= surah <= SURAH_COUNT:
        raise UnknownAyahError(f"no surah {surah}: surahs are numbered 1-{SURAH_COUNT}")


def _check_ayah(surah: int, ayah: int) -> None:
    count = ayah_count(surah)
    if not 1 <= ayah <= count:
        raise UnknownAyahError(f"no ayah {surah}:{ayah}: surah {surah} has ayahs 1-{count}")
