"""Content check on decodings built from references: skipped, repeated, changed, added words."""

from __future__ import annotations

import numpy as np
import pytest

from iqrah.acoustic import Vocabulary
from iqrah.assess.content import Heard, check_content
from iqrah.acoustic.vocab import collapse_runs
from iqrah.quran import build_reference

VOCAB = Vocabulary()


def heard_from(words: list[str]) -> Heard:
    """A decoding of these phoneme strings, one token per collapsed letter, 3 frames apart."""
    text = collapse_runs("".join(words))
    return Heard(text, np.arange(len(text)) * 3)


def word_phonemes(ref):
    return [w.phonemes for w in ref.words]


@pytest.fixture(scope="module")
def ref():
    return build_reference("2:255")


def kinds(result):
    return [(f.kind, f.word_indices) for f in result.findings]


def test_a_faithful_recitation_has_no_findings(ref):
    result = check_content(heard_from(word_phonemes(ref)), ref, VOCAB)
    assert result.per == 0 and result.findings == []


def test_a_skipped_word_is_missing(ref):
    words = word_phonemes(ref)
    result = check_content(heard_from(words[:10] + words[11:]), ref, VOCAB)
    assert kinds(result) == [("missing", (10,))]
    assert result.word_kind(10) == "missing" and result.word_kind(9) is None


@pytest.mark.parametrize("word", [20, 22])  # a two-phoneme word (dha) and a longer one
def test_a_repeated_word_is_found(ref, word):
    words = word_phonemes(ref)
    result = check_content(heard_from(words[:word + 1] + [words[word]] + words[word + 1:]), ref, VOCAB)
    assert kinds(result) == [("repeated", (word,))]


def test_a_word_from_another_ayah_is_a_substitution(ref):
    words = word_phonemes(ref)
    other = build_reference("2:282").words[5].phonemes  # a different word of similar length
    result = check_content(heard_from(words[:30] + [other] + words[31:]), ref, VOCAB)
    assert ("substituted", (30,)) in kinds(result)


def test_added_material_is_extra(ref):
    words = word_phonemes(ref)
    added = "فَقَاالَتِلكَ"  # words that are not in the ayah
    result = check_content(heard_from(words[:5] + [added] + words[5:]), ref, VOCAB)
    assert kinds(result) == [("extra", (4,))]
    assert result.findings[0].heard == collapse_runs(added)


def test_what_is_said_before_or_after_the_ayah_is_not_reported(ref):
    """The isti'adha before the first word, the next ayah (or amin) after the last: not the
    ayah's words and not mistakes in it. Saying its last word again is still a repetition."""
    words = word_phonemes(ref)
    istiadha = build_reference("1:1").words[0].phonemes + "ءَعُۥذُبِلَاهِ"
    next_ayah = "".join(build_reference("2:256").words[i].phonemes for i in range(3))
    result = check_content(heard_from([istiadha] + words + [next_ayah]), ref, VOCAB)
    assert kinds(result) == []
    result = check_content(heard_from(words + [words[-1]]), ref, VOCAB)
    assert kinds(result) == [("repeated", (len(words) - 1,))]


def test_another_ayah_entirely_has_a_high_per(ref):
    other = build_reference("2:282")
    result = check_content(heard_from(word_phonemes(other)[:40]), ref, VOCAB)
    assert result.per > 0.5
    assert sum(f.kind in ("missing", "substituted") for f in result.findings) > len(ref.words) / 2


def test_a_deleted_word_with_nothing_in_its_place_is_missing_not_substituted(ref):
    words = word_phonemes(ref)
    for w in (4, 30, 41):
        result = check_content(heard_from(words[:w] + words[w + 1:]), ref, VOCAB)
        assert kinds(result) == [("missing", (w,))]


def test_edit_opcodes_rebuild_the_decoding_at_the_weighted_optimum():
    import random

    from iqrah.assess.content import SUBSTITUTE_COST, edit_opcodes

    def weighted(a, b):
        d = np.zeros((len(a) + 1, len(b) + 1))
        d[:, 0], d[0, :] = range(len(a) + 1), range(len(b) + 1)
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i, j] = min(d[i - 1, j - 1] + (a[i - 1] != b[j - 1]) * SUBSTITUTE_COST, d[i - 1, j] + 1, d[i, j - 1] + 1)
        return d[-1, -1]

    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        ops = edit_opcodes(a, b)
        assert "".join(b[h0:h1] for tag, _, _, h0, h1 in ops if tag != "delete") == b
        assert "".join(a[r0:r1] for tag, r0, r1, _, _ in ops if tag != "insert") == a
        cost = sum({"replace": SUBSTITUTE_COST * (r1 - r0), "delete": r1 - r0, "insert": h1 - h0, "equal": 0}[tag]
                   for tag, r0, r1, h0, h1 in ops)
        assert cost == pytest.approx(weighted(a, b))
    # added material stays in one piece
    assert [op[0] for op in edit_opcodes("abab", "abXabab")] in (["equal", "insert", "equal"],)


def test_a_word_said_twice_split_anywhere_is_a_repetition():
    """The edit alignment may keep the start of the first copy and the end of the second: the
    inserted part ('الَ' of 'قَالَ') still repeats the word."""
    from iqrah.assess.content import WordContent, _repeated_word, infix_distance

    assert infix_distance("فَرَا", "وَغَفَرَ") == 1
    assert infix_distance("abc", "xyz") == 3
    words = [WordContent(0, "قَالَ", "قَالَ", 5, 0, 0), WordContent(1, "لَهُم", "لَهُم", 5, 0, 0)]
    assert _repeated_word("الَ", words, 0) == 0
    assert _repeated_word("سِۦن", words, 0) is None


def test_a_word_said_twice_heard_as_end_then_start_is_a_repetition(ref):
    """'بِءِذنِهِۦ' said twice, the edit alignment keeping the first copy's start and the second's
    end: what it calls inserted is the end of one copy and the start of the next."""
    words = word_phonemes(ref)
    said = collapse_runs(words[25])
    rotated = said[4:] + said[:4]  # نِهِۦبِءِذ
    result = check_content(heard_from(words[:26] + [rotated] + words[26:]), ref, VOCAB)
    assert kinds(result) == [("repeated", (25,))]


def test_a_short_word_said_twice_with_its_nasal_run_together_is_a_repetition(ref):
    """'مِن مِن' is often heard 'مِمِن': two thirds of the word inserted."""
    words = word_phonemes(ref)
    result = check_content(heard_from(words[:35] + ["مِ"] + words[35:]), ref, VOCAB)
    assert kinds(result) == [("repeated", (35,))]
    # a lone short vowel or letter is still decoding noise
    result = check_content(heard_from(words[:35] + ["ِ"] + words[35:]), ref, VOCAB)
    assert kinds(result) == []


def _log_probs_saying(ref, word: int, expected_p: float, accent_p: float | None = None) -> np.ndarray:
    """Two frames per collapsed reference token (the token, then blank); in the token frames of
    ``word`` another phoneme is the model's best guess and the expected one has ``expected_p``;
    ``accent_p``: so it has in every other word too (a learner's accent)."""
    from iqrah.align.words import alignment_targets

    targets = alignment_targets(ref, VOCAB)
    word_of_token = [ref.units[u].word_index for u in targets.unit_of_token]
    other = VOCAB.encode("س")[0]
    rows = []
    for token, w in zip(targets.ids, word_of_token):
        p = np.full(len(VOCAB), 1e-4)
        if token != other and (w == word or accent_p is not None):
            p[token], p[other] = (expected_p if w == word else accent_p), 0.9
        else:
            p[token] = 0.95
        rows.append(p)
        blank = np.full(len(VOCAB), 1e-4)
        blank[VOCAB.blank] = 0.95
        rows.append(blank)
    probs = np.array(rows)
    return np.log(probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("expected_p", "reported"), [(0.3, False), (0.004, True)])
def test_a_word_heard_differently_is_judged_by_how_the_expected_phonemes_fit(expected_p, reported):
    """Free decoding hears another phoneme throughout word 2; the forced alignment decides: the
    expected phonemes a third as likely as the best (a learner's accent) -> said; a hundredth ->
    another word was said in its place."""
    from iqrah.align.words import align_reference
    from iqrah.assess.content import FIT_MAX_GOP, judge_words_by_fit, word_fits

    ref = build_reference("1:2")
    log_probs = _log_probs_saying(ref, 2, expected_p)
    heard = Heard.from_log_probs(log_probs, VOCAB)
    content = check_content(heard, ref, VOCAB)
    assert content.word_kind(2) == "substituted"  # by the decoding alone
    aligned = align_reference(log_probs, ref, VOCAB, 0.04)
    fits = word_fits(aligned, ref)
    assert (fits[2] < FIT_MAX_GOP) == reported and all(f > -0.2 for i, f in enumerate(fits) if i != 2)
    judge_words_by_fit(content, aligned, ref, 0.0, 0.04)
    assert (content.word_kind(2) == "substituted") == reported
    assert all(content.word_kind(w) is None for w in (0, 1, 3))


@pytest.mark.parametrize(("expected_p", "reported"), [(0.03, False), (0.002, True)])
def test_a_learners_word_is_judged_against_how_their_other_words_fit(expected_p, reported):
    """A learner whose every word fits at about -1.3 nats (the expected phonemes a quarter as
    likely as the best): a word at -3.4 fits badly for a professional, not for this voice; at
    -6 another word was said."""
    from iqrah.align.words import align_reference
    from iqrah.assess.content import FIT_MAX_GOP, fit_line, judge_words_by_fit, word_fits

    ref = build_reference("1:7")  # 9 words: enough to know the voice
    log_probs = _log_probs_saying(ref, 2, expected_p, accent_p=0.25)
    content = check_content(Heard.from_log_probs(log_probs, VOCAB), ref, VOCAB)
    aligned = align_reference(log_probs, ref, VOCAB, 0.04)
    fits = word_fits(aligned, ref)
    assert fits[2] < FIT_MAX_GOP and all(-1.6 < f < -1.0 for i, f in enumerate(fits) if i != 2)
    assert fit_line(fits) == pytest.approx(FIT_MAX_GOP + float(np.median(fits)))
    judge_words_by_fit(content, aligned, ref, 0.0, 0.04)
    assert (content.word_kind(2) == "substituted") == reported


def test_the_fit_line_moves_only_for_a_voice_whose_words_fit_poorly():
    from iqrah.assess.content import FIT_MAX_GOP, fit_line

    assert fit_line([0.0, 0.0, -4.0, 0.0, 0.0]) == FIT_MAX_GOP  # a professional: one bad word
    assert fit_line([-2.0, -1.5, -2.5, -6.0, -1.0]) == pytest.approx(FIT_MAX_GOP - 2.0)  # a learner's accent
    # too few words to know the voice: a word left out and the neighbour it squeezes would move it
    assert fit_line([0.0, -5.4, -5.8]) == FIT_MAX_GOP
    assert fit_line([-2.0, None, -2.0, -2.0, -2.0]) == FIT_MAX_GOP


def test_a_word_left_out_stays_missing():
    """A word left out: the alignment skips it (no fit) or squeezes its phonemes onto frames
    that say something else (a bad fit); either way it stays missing however well its
    neighbours fit."""
    from iqrah.align.words import align_reference
    from iqrah.assess.content import FIT_MAX_GOP, judge_words_by_fit, word_fits

    ref = build_reference("1:2")
    full = _log_probs_saying(ref, -1, 0.0)
    from iqrah.align.words import alignment_targets

    targets = alignment_targets(ref, VOCAB)
    word_of_token = np.repeat([ref.units[u].word_index for u in targets.unit_of_token], 2)
    log_probs = full[word_of_token != 1]  # word 1 left out
    content = check_content(Heard.from_log_probs(log_probs, VOCAB), ref, VOCAB)
    assert content.word_kind(1) == "missing"
    aligned = align_reference(log_probs, ref, VOCAB, 0.04)
    fit = word_fits(aligned, ref)[1]
    assert fit is None or fit < FIT_MAX_GOP
    judge_words_by_fit(content, aligned, ref, 0.0, 0.04)
    assert content.word_kind(1) == "missing"


def test_the_streams_word_rule_is_the_recordings_rule():
    from iqrah.assess.content import FIT_MAX_GOP
    from iqrah.assess.judge import word_content

    assert word_content("ءَلحَمدُ", "ءَلحَمدُ", None) is None  # heard as written
    assert word_content("ءَلحَمدُ", "سَلسَمسُ", FIT_MAX_GOP - 1) == "substituted"
    assert word_content("ءَلحَمدُ", "سَلسَمسُ", FIT_MAX_GOP + 1) is None  # heard differently, fits
    assert word_content("ءَلحَمدُ", "", None) == "missing"  # not placed, nothing heard
    assert word_content("ءَلحَمدُ", "", FIT_MAX_GOP + 1) is None  # placed and fits: said softly
    assert word_content("ءَلحَمدُ", "سَلسَمسُ", FIT_MAX_GOP - 1, line=FIT_MAX_GOP - 2) is None  # a learner's voice


def test_a_word_partly_placed_has_a_fit_only_for_the_live_stream():
    """The audio so far ends inside the last word: the recording's rule has no fit for it (not
    all of it was heard), the live stream judges it by the tokens placed so far."""
    from iqrah.align.words import align_reference, alignment_targets
    from iqrah.assess.content import word_fits

    ref = build_reference("1:2")
    log_probs = _log_probs_saying(ref, -1, 0.0)
    targets = alignment_targets(ref, VOCAB)
    last = [ref.units[u].word_index for u in targets.unit_of_token].count(3)
    aligned = align_reference(log_probs[: len(log_probs) - 2 * (last - 2)], ref, VOCAB, 0.04, partial=True)
    assert word_fits(aligned, ref)[3] is None
    live = word_fits(aligned, ref, whole=False)
    assert live[3] is not None and live[3] > -0.2
    assert word_fits(aligned, ref)[:3] == live[:3]
