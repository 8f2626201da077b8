"""The expected recitation of an ayah, a range of ayahs or a span of words, phoneme by phoneme.

Each ayah (or the requested word span) is phonetized once as a whole, because a word's phonemes
depend on its neighbours (idgham, hamzat al-wasl) and on where the reciter stops. The result is
then cut into the phonetizer's own phoneme groups ("units", one per row of sifat) and each unit
is traced back to the Uthmani word and letters it came from through the phonetizer's mappings.
A range of ayahs is recited with a stop at the end of each ayah, so each ayah is its own span.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from quran_transcript import MappingPos, quran_phonetizer
from quran_transcript import alphabet as alph

from ..config import RecitationSettings
from . import rules as tajweed
from .rules import Rule
from .text import AyahSpec, ayah_words, basmala_text, has_separate_basmala, parse_spec

SIFAT = ("hams_or_jahr", "shidda_or_rakhawa", "tafkheem_or_taqeeq", "itbaq", "safeer", "qalqla",
         "tikraar", "tafashie", "istitala", "ghonna")


@dataclass(frozen=True)
class PhonemeUnit:
    """One phoneme group: a letter (possibly held or doubled) with its vowel, or a madd.

    ``char_span`` is the [start, end) range of Uthmani characters in the word it came from;
    ``phoneme_span`` the [start, end) range in ``Reference.phonemes``.
    """

    index: int
    phonemes: str
    word_index: int
    char_span: tuple[int, int]
    phoneme_span: tuple[int, int]
    sifat: dict[str, str]
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Word:
    """One Uthmani word of the reference; ``units`` are indices into ``Reference.units``.

    ``ayah`` is 0 for a basmala recited before the first ayah; ``number`` counts words from 1
    within the ayah (as word timing files do).
    """

    index: int
    surah: int
    ayah: int
    number: int
    text: str
    units: tuple[int, int]
    phonemes: str


@dataclass(frozen=True)
class Reference:
    spec: str
    settings: RecitationSettings
    words: tuple[Word, ...]
    units: tuple[PhonemeUnit, ...]
    phonemes: str
    includes_basmala: bool = False
    _meta: dict = field(default_factory=dict, compare=False, repr=False)

    def word_units(self, word_index: int) -> tuple[PhonemeUnit, ...]:
        start, end = self.words[word_index].units
        return self.units[start:end]

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("_meta")
        for unit in data["units"]:
            for rule, obj in zip(unit["rules"], self.units[unit["index"]].rules):
                rule["tag"] = obj.tag
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        """The Reference ``to_dict`` described (read back from the reference cache)."""
        units = tuple(PhonemeUnit(
            index=u["index"], phonemes=u["phonemes"], word_index=u["word_index"],
            char_span=tuple(u["char_span"]), phoneme_span=tuple(u["phoneme_span"]), sifat=dict(u["sifat"]),
            rules=tuple(Rule(**{k: v for k, v in r.items() if k != "tag"}) for r in u["rules"]))
            for u in data["units"])
        words = tuple(Word(**(w | {"units": tuple(w["units"])})) for w in data["words"])
        settings = data["settings"]
        return cls(spec=data["spec"], settings=RecitationSettings(**settings), words=words, units=units,
                   phonemes=data["phonemes"], includes_basmala=data["includes_basmala"])


    def to_columns(self) -> dict:
        """The Reference as a few flat lists (one per field) instead of a dict per unit: what the
        reference cache stores, so that reading back an ayah of 500 units unpacks a few dozen
        containers, not thousands (each of which the garbage collector would have to visit)."""
        units, words = self.units, self.words
        rules = [(u.index, r) for u in units for r in u.rules]
        return {"spec": self.spec, "settings": asdict(self.settings), "phonemes": self.phonemes,
                "includes_basmala": self.includes_basmala,
                "words": {"surah": [w.surah for w in words], "ayah": [w.ayah for w in words],
                          "number": [w.number for w in words], "text": [w.text for w in words],
                          "units": [x for w in words for x in w.units], "phonemes": [w.phonemes for w in words]},
                "units": {"phonemes": [u.phonemes for u in units], "word_index": [u.word_index for u in units],
                          "char_span": [x for u in units for x in u.char_span],
                          "phoneme_span": [x for u in units for x in u.phoneme_span],
                          "sifat": {name: [u.sifat.get(name) for u in units] for name in SIFAT}},
                "rules": {"unit": [i for i, _ in rules], "family": [r.family for _, r in rules],
                          "kind": [r.kind for _, r in rules], "harakat": [r.harakat for _, r in rules],
                          "name_en": [r.name_en for _, r in rules], "name_ar": [r.name_ar for _, r in rules]}}

    @classmethod
    def from_columns(cls, data: dict) -> Reference:
        """The Reference ``to_columns`` described. Equal sifat and rules are shared objects."""
        w, u, r = data["words"], data["units"], data["rules"]
        shared: dict = {}
        rules: dict[int, list[Rule]] = {}
        for i, *fields in zip(r["unit"], r["family"], r["kind"], r["harakat"], r["name_en"], r["name_ar"]):
            rules.setdefault(i, []).append(shared.setdefault(tuple(fields), Rule(*fields)))
        sifat_rows = zip(*(u["sifat"][name] for name in SIFAT))
        units = []
        for i, (phonemes, word_index, row) in enumerate(zip(u["phonemes"], u["word_index"], sifat_rows)):
            sifat = shared.get(row)
            if sifat is None:
                sifat = shared[row] = {name: v for name, v in zip(SIFAT, row) if v is not None}
            units.append(PhonemeUnit(i, phonemes, word_index, tuple(u["char_span"][2 * i:2 * i + 2]),
                                     tuple(u["phoneme_span"][2 * i:2 * i + 2]), sifat, tuple(rules.get(i, ()))))
        words = tuple(Word(i, surah, ayah, number, text, tuple(w["units"][2 * i:2 * i + 2]), phonemes)
                      for i, (surah, ayah, number, text, phonemes)
                      in enumerate(zip(w["surah"], w["ayah"], w["number"], w["text"], w["phonemes"])))
        return cls(spec=data["spec"], settings=RecitationSettings(**data["settings"]), words=words,
                   units=tuple(units), phonemes=data["phonemes"], includes_basmala=data["includes_basmala"])


def build_reference(spec: str | AyahSpec, settings: RecitationSettings | None = None, *,
                    include_basmala: bool = False) -> Reference:
    """The Reference for ``spec``. ``include_basmala`` prepends the basmala to an ayah 1 that is
    recited with one (every surah but 1 and 9); its words then have ``ayah == 0``.

    Raises UnknownAyahError for a spec that names no text of the Quran.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    settings = settings or RecitationSettings()
    return _cached_reference(spec, settings, include_basmala)


_store = None  # the persistent reference cache (iqrah.cache), if one is in use


def use_reference_cache(cache) -> None:
    """Keep text references in ``cache`` (an ``iqrah.cache.Cache``; None: this process only), so
    that other processes and servers read them back instead of phonetizing again."""
    global _store
    _store = cache
    _cached_reference.cache_clear()


@lru_cache(maxsize=256)
def _cached_reference(spec: AyahSpec, settings: RecitationSettings, include_basmala: bool) -> Reference:
    if _store is None:
        return _phonetize(spec, settings, include_basmala)
    return stored_reference(_store, spec, settings, include_basmala)


def stored_reference(store, spec: AyahSpec, settings: RecitationSettings, include_basmala: bool = False) -> Reference:
    """The Reference from ``store`` (an ``iqrah.cache.Cache``), phonetized and stored there if it
    is not yet. Keyed by the phonetizer's version and the settings: a new phonetizer never
    reads what an old one wrote."""
    from importlib.metadata import version

    from ..cache import cache_key, settings_tag

    ayahs = f"{spec}{'+basmala' if include_basmala else ''}".split(":", 1)[1]
    # "c": stored as columns (to_columns); the dict per unit of before is not read
    key = cache_key(f"qt{version('quran-transcript')}c", settings_tag(settings), spec.surah, ayahs)
    return Reference.from_columns(store.get_or_build(
        key, lambda: _phonetize(spec, settings, include_basmala).to_columns()))


def _phonetize(spec: AyahSpec, settings: RecitationSettings, include_basmala: bool) -> Reference:
    moshaf = settings.to_moshaf()
    segments: list[tuple[int, list[str], int]] = []  # (ayah, words, number of the first word)
    basmala = include_basmala and spec.ayah == 1 and spec.word_start is None and has_separate_basmala(spec.surah)
    if basmala:
        segments.append((0, basmala_text().split(), 1))
    for ayah in spec.ayahs:
        words = ayah_words(spec.surah, ayah)
        if spec.word_start is not None:
            segments.append((ayah, words[spec.word_start - 1 : spec.word_end], spec.word_start))
        else:
            segments.append((ayah, words, 1))

    words: list[Word] = []
    units: list[PhonemeUnit] = []
    phonemes = ""
    for ayah, segment_words, first_number in segments:
        seg_words, seg_units, seg_phonemes = _phonetize_segment(
            spec.surah, ayah, segment_words, first_number, moshaf,
            word_offset=len(words), unit_offset=len(units), phoneme_offset=len(phonemes))
        words += seg_words
        units += seg_units
        phonemes += seg_phonemes
    return Reference(spec=str(spec), settings=settings, words=tuple(words), units=tuple(units),
                     phonemes=phonemes, includes_basmala=basmala)


# The phonetizer expects a shadda before its vowel, as in its own text; Unicode's canonical order
# (NFC, and many other Quran texts) puts the vowel first.
_SHADDA_AFTER_VOWEL = re.compile("([\u064b-\u0650\u0652])(\u0651)")


def reference_from_text(text: str, surah: int = 0, ayah: int = 0,
                        settings: RecitationSettings | None = None) -> Reference:
    """A Reference for exact Uthmani ``text`` (e.g. a partial ayah a data set transcribes).

    ``surah`` (0 if unknown) selects surah-specific readings; words are numbered from 1.
    """
    settings = settings or RecitationSettings()
    text = _SHADDA_AFTER_VOWEL.sub("\\2\\1", text)
    words, units, phonemes = _phonetize_segment(surah, ayah, text.split(), 1, settings.to_moshaf(),
                                                word_offset=0, unit_offset=0, phoneme_offset=0)
    spec = f"{surah}:{ayah}" if surah and ayah else "text"
    return Reference(spec=spec, settings=settings, words=tuple(words), units=tuple(units),
                     phonemes=phonemes)


def _phonetize_segment(surah, ayah, segment_words, first_number, moshaf, *, word_offset,
                       unit_offset, phoneme_offset):
    """Phonetize one span of words (stopping at its end) and trace units back to words."""
    text = " ".join(segment_words)
    out = quran_phonetizer(text, moshaf, remove_spaces=True, sura_idx=surah)
    if "".join(row.phonemes for row in out.sifat) != out.phonemes:
        raise RuntimeError(f"quran-transcript sifat do not cover the phonemes of {surah}:{ayah}")

    char_word = _char_word_index(segment_words)
    index = _MappingIndex(out.mappings, char_word, len(out.phonemes), text)

    words_units: list[list[int]] = [[] for _ in segment_words]
    units: list[PhonemeUnit] = []
    start = 0
    for row_index, row in enumerate(out.sifat):
        end = start + len(row.phonemes)
        w = index.word_of_unit(start, end)
        unit_index = unit_offset + len(units)
        sources = index.sources(start, end)
        own_chars = [i for i in sources if char_word[i] == w]
        word_start_char = char_word.index(w)
        char_span = ((min(own_chars) - word_start_char, max(own_chars) + 1 - word_start_char)
                     if own_chars else (0, 0))
        source_chars = "".join(text[i] for i in sources)
        # letters of earlier words deleted right where this word's first unit starts: an idgham
        merged = "" if words_units[w] else "".join(
            text[i] for i in index.deleted_at[start] if char_word[i] < w)
        previous = units[-1].phonemes if units else ""
        unit_rules = _unit_rules(row.phonemes, index.rules_in(start, end), source_chars, merged,
                                 after_hamza=previous[:1] == alph.phonetics.hamza,
                                 is_last=row_index == len(out.sifat) - 1)
        units.append(PhonemeUnit(
            index=unit_index, phonemes=row.phonemes, word_index=word_offset + w,
            char_span=char_span, phoneme_span=(phoneme_offset + start, phoneme_offset + end),
            sifat={name: getattr(row, name) for name in SIFAT}, rules=unit_rules))
        words_units[w].append(unit_index)
        start = end

    words = []
    for w, word_text in enumerate(segment_words):
        idx = words_units[w]
        span = (idx[0], idx[-1] + 1) if idx else _empty_span(words_units, w, unit_offset)
        words.append(Word(
            index=word_offset + w, surah=surah, ayah=ayah, number=first_number + w, text=word_text,
            units=span, phonemes="".join(units[i - unit_offset].phonemes for i in idx)))
    return words, units, out.phonemes


def _char_word_index(words: list[str]) -> list[int]:
    """Word index of every character of ``" ".join(words)``; -1 for the separating spaces."""
    index: list[int] = []
    for w, word in enumerate(words):
        if w:
            index.append(-1)
        index += [w] * len(word)
    return index


class _MappingIndex:
    """The phonetizer's char -> phoneme mappings turned around: phoneme position -> letters."""

    def __init__(self, mappings: list[MappingPos], char_word: list[int], n: int, text: str):
        self.char_word, self.text = char_word, text
        self.covering: list[list[int]] = [[] for _ in range(n + 1)]
        self.deleted_at: list[list[int]] = [[] for _ in range(n + 1)]
        self.rules_at: list[list[int]] = [[] for _ in range(n + 1)]
        for i, m in enumerate(mappings):
            if char_word[i] < 0:
                continue
            if m.deleted:
                self.deleted_at[m.pos[0]].append(i)
                continue
            for p in range(*m.pos):
                self.covering[p].append(i)
                if m.tajweed_rules:
                    self.rules_at[p].append(i)
        self.mappings = mappings
        self.owner = self._owner(char_word, n)

    def _owner(self, char_word: list[int], n: int) -> list[int]:
        """The word each phoneme came from: that of the first letter that produced it."""
        owner = [char_word[c[0]] if c else -1 for c in self.covering[:n]]
        last = next((w for w in owner if w >= 0), 0)
        for p, w in enumerate(owner):  # a phoneme no letter claims goes with what precedes it
            if w < 0:
                owner[p] = last
            last = owner[p]
        return owner

    def word_of_unit(self, start: int, end: int) -> int:
        """The word a unit belongs to: that of its first phoneme, unless the unit also sounds a
        letter of a later word. An idgham into waw or yaa (``بِءَكوَاابِوووَ``: the tanween held
        as the next word's waw) makes one unit of the tanween and the next word's letter and
        vowel; it belongs to the word whose letter it sounds, as idgham into meem or noon does."""
        owner = self.owner[start]
        letters = [i for p in range(start, end) for i in self.covering[p]
                   if self.char_word[i] > owner and unicodedata.category(self.text[i]).startswith("L")]
        return self.char_word[max(letters)] if letters else owner

    def sources(self, start: int, end: int) -> list[int]:
        """Letters mapped into phonemes [start, end), with marks deleted inside that range."""
        found = {i for p in range(start, end) for i in self.covering[p]}
        found.update(i for p in range(start + 1, end) for i in self.deleted_at[p])
        return sorted(found)

    def rules_in(self, start: int, end: int) -> list:
        """Tajweed rules of the mappings that overlap phonemes [start, end)."""
        chars = sorted({i for p in range(start, end) for i in self.rules_at[p]})
        return [rule for i in chars for rule in self.mappings[i].tajweed_rules]


def _unit_rules(phonemes, candidates, source_chars, merged, *, after_hamza, is_last):
    rules: list[Rule] = []
    for rule in candidates:
        relevant = rule.get_relvant_rule(phonemes)
        name = type(rule).__name__
        if relevant is not None and name in tajweed.MADD_KINDS:
            rules.append(tajweed.madd_rule(name, relevant.golden_len, after_hamza=after_hamza,
                                           source_chars=source_chars))
    rules += tajweed.sound_rules(phonemes, source_chars=source_chars,
                                 merged_from_previous_word=merged, is_last=is_last)
    return tuple(dict.fromkeys(rules))


def _empty_span(words_units, w, unit_offset):
    """A word whose letters all merged into a neighbour owns no unit: an empty span where it sits."""
    before = [i for units in words_units[:w] for i in units]
    at = before[-1] + 1 if before else unit_offset
    return (at, at)
