"""The Reference: phonemes equal the phonetizer's, units trace back to words, rules are right."""

from __future__ import annotations

import pytest
from quran_transcript import Aya, quran_phonetizer

from iqrah.config import RecitationSettings
from iqrah.quran import UnknownAyahError, build_reference, parse_spec
from iqrah.quran.text import ayah_words


def tags(ref, word_number, ayah=None):
    word = next(w for w in ref.words if w.number == word_number and (ayah is None or w.ayah == ayah))
    return [r.tag for u in ref.word_units(word.index) for r in u.rules]


def check_invariants(ref):
    assert "".join(u.phonemes for u in ref.units) == ref.phonemes
    assert "".join(w.phonemes for w in ref.words) == ref.phonemes
    for i, unit in enumerate(ref.units):
        assert unit.index == i
        a, b = unit.phoneme_span
        assert ref.phonemes[a:b] == unit.phonemes
        word = ref.words[unit.word_index]
        assert word.units[0] <= i < word.units[1]
        start, end = unit.char_span
        assert 0 <= start < end <= len(word.text)
    for w, word in enumerate(ref.words):
        assert word.index == w


def test_phonemes_equal_the_phonetizer_with_hafs_defaults():
    ref = build_reference("1:2")
    expected = quran_phonetizer(Aya(1, 2).get().uthmani, RecitationSettings().to_moshaf(),
                                remove_spaces=True).phonemes
    assert ref.phonemes == expected
    assert [w.text for w in ref.words] == Aya(1, 2).get().uthmani_words
    assert [w.phonemes for w in ref.words] == ["ءَلحَمدُ", "لِللَااهِ", "رَببِ", "لعَاالَمِۦۦۦۦن"]
    check_invariants(ref)


def test_units_are_sifat_rows_with_letters_of_their_word():
    ref = build_reference("1:2")
    assert len(ref.units) == 18
    hamd = ref.words[0]
    units = ref.word_units(0)
    assert [u.phonemes for u in units] == ["ءَ", "ل", "حَ", "م", "دُ"]
    assert [hamd.text[slice(*u.char_span)] for u in units] == ["ٱ", "ل", "حَ", "م", "دُ"]
    assert units[2].sifat["hams_or_jahr"] == "hams"  # haa is whispered
    assert units[0].sifat["shidda_or_rakhawa"] == "shadeed"


@pytest.mark.parametrize("spec,word,expected", [
    ("1:7", 9, ["shadda:shadda", "madd:lazem", "shadda:shadda", "madd:aared"]),
    ("2:8", 2, ["ghunnah:mushaddadah", "madd:natural"]),
    # man yaqoolu: the noon merges into the yaa with ghunnah; the held yaa is the next word's
    ("2:8", 3, []),
    ("2:8", 4, ["ghunnah:idgham", "madd:natural"]),
    ("2:8", 5, ["madd:badal", "ghunnah:mushaddadah", "madd:natural"]),
    ("2:8", 10, ["ghunnah:ikhfaa_shafawi"]),  # hum bi-mu'mineen
    ("2:27", 2, ["ghunnah:ikhfaa", "madd:natural"]),
    ("2:27", 5, ["ghunnah:iqlab"]),  # min ba'di
    ("2:27", 8, ["qalqalah:sughra", "madd:natural"]),
    ("2:27", 9, ["madd:monfasel"]),
    ("2:27", 18, ["madd:mottasel"]),
    ("2:5", 4, ["ghunnah:idgham"]),  # hudan min: tanween into meem
    ("2:5", 5, ["idgham:without_ghunnah", "shadda:shadda"]),  # min rabbihim
    ("2:19", 13, ["ghunnah:idgham_shafawi"]),  # adhanihim min
    ("2:27", 7, ["madd:natural", "madd:natural", "madd:silah"]),
    ("2:1", 1, ["madd:lazem", "ghunnah:mushaddadah", "madd:lazem"]),
])
def test_tajweed_rules(spec, word, expected):
    assert tags(build_reference(spec), word) == expected


def test_qalqalah_at_a_stop_is_kubra():
    ref = build_reference("112:1-4")
    assert tags(ref, 4, ayah=1) == ["qalqalah:kubra"]
    assert tags(ref, 2, ayah=3) == ["qalqalah:sughra"]  # yalid, in the middle of the ayah
    assert tags(ref, 4, ayah=3) == ["madd:natural", "qalqalah:kubra"]


def test_madd_lengths_follow_the_settings():
    default = build_reference("2:27")
    short = build_reference("2:27", RecitationSettings(madd_monfasel=2, madd_aared=2))
    def lengths(ref):
        return [(r.kind, r.harakat) for u in ref.units for r in u.rules if r.family == "madd"]
    assert ("monfasel", 4) in lengths(default) and ("monfasel", 2) in lengths(short)
    assert ("aared", 4) in lengths(default) and ("aared", 2) in lengths(short)
    assert len(short.phonemes) < len(default.phonemes)


def test_range_stops_at_each_ayah_end():
    ref = build_reference("1:1-3")
    assert [w.ayah for w in ref.words] == [1] * 4 + [2] * 4 + [3] * 2
    assert [w.number for w in ref.words] == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    joined = "".join(build_reference(f"1:{a}").phonemes for a in (1, 2, 3))
    assert ref.phonemes == joined
    check_invariants(ref)


def test_word_span_is_phonetized_as_recited_alone():
    span = build_reference("2:255:3-5")
    assert [w.text for w in span.words] == ayah_words(2, 255)[2:5]
    assert [w.number for w in span.words] == [3, 4, 5]
    # stopping on huwa: its waw becomes a madd, not the fatha it has in the middle of the ayah
    assert span.words[-1].phonemes == "هُۥۥ"
    check_invariants(span)


def test_basmala_is_prepended_only_where_it_is_recited():
    ref = build_reference("2:1", include_basmala=True)
    assert ref.includes_basmala and [w.ayah for w in ref.words] == [0, 0, 0, 0, 1]
    assert not build_reference("9:1", include_basmala=True).includes_basmala
    assert not build_reference("1:1", include_basmala=True).includes_basmala
    check_invariants(ref)


def test_json_round_trip():
    import json
    data = json.loads(build_reference("2:27").to_json())
    assert data["spec"] == "2:27"
    unit = next(u for u in data["units"] if u["rules"])
    assert {"family", "kind", "harakat", "name_en", "name_ar", "tag"} <= set(unit["rules"][0])


@pytest.mark.parametrize("spec,message", [
    ("115:1", "surahs are numbered 1-114"),
    ("0:1", "surahs are numbered 1-114"),
    ("1:8", "surah 1 has ayahs 1-7"),
    ("1:0", "surah 1 has ayahs 1-7"),
    ("abc", "expected SURAH:AYAH"),
    ("2:5-3", "ends before it starts"),
    ("1:2:5", "has words 1-4"),
])
def test_unknown_ayahs_name_the_valid_range(spec, message):
    with pytest.raises(UnknownAyahError, match=message):
        build_reference(spec)


def test_spec_forms():
    assert str(parse_spec("2:255")) == "2:255"
    assert str(parse_spec(" 2 : 255 - 257 ")) == "2:255-257"
    assert str(parse_spec("2:255:3")) == "2:255:3"
    assert parse_spec("2:255:3-7").word_end == 7


def test_references_stored_as_columns_read_back_equal():
    """The cache keeps a Reference as flat columns (few containers to unpack); reading it back
    gives the same words, units, sifat and rules, with equal sifat and rules shared."""
    from iqrah.quran.reference import Reference

    for spec, basmala in (("2:282", False), ("2:1", True), ("2:255:3-5", False), ("1:1-7", False)):
        ref = build_reference(spec, include_basmala=basmala)
        back = Reference.from_columns(ref.to_columns())
        assert back == ref and back.to_dict() == ref.to_dict()
    units = Reference.from_columns(build_reference("2:282").to_columns()).units
    assert len({id(u.sifat) for u in units}) < len(units) / 4
