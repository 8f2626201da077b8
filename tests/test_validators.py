"""Tajweed validators on alignments with known durations, and the audio surgery of the evals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from iqrah.acoustic import Vocabulary
from iqrah.align.ctc import Alignment
from iqrah.align.words import ReferenceAlignment, UnitTiming, WordTiming, alignment_targets
from iqrah.assess.findings import AssessmentContext
from iqrah.assess.ghunnah import check_ghunnah
from iqrah.assess.madd import check_madd
from iqrah.assess.pace import SHORT_VOWELS_PER_COUNT, is_short_syllable
from iqrah.assess.qalqalah import check_qalqalah
from iqrah.assess.shadda import check_shadda
from iqrah.evaluate.tsm import crossfade_join, stretch_span, time_stretch
from iqrah.quran import build_reference

COUNT = 0.2  # seconds per haraka in these synthetic recitations


def synthetic_context(ref, counts_of, pause_after_word=None):
    """An alignment where each unit is held ``counts_of(unit)`` counts, back to back; with
    ``pause_after_word``, a 0.5 s silence after that word, the rest of the audio sounding."""
    t, units, pause = 0.5, [], None
    for unit in ref.units:
        if pause_after_word is not None and unit.word_index == pause_after_word + 1 and pause is None:
            pause = (t, t + 0.5)
            t += 0.5
        held = counts_of(unit) * COUNT
        units.append(UnitTiming(unit.index, t, t + held, 0.9, -0.1))
        t += held
    words = []
    for word in ref.words:
        a, b = word.units
        words.append(WordTiming(word.index, units[a].start, units[b - 1].end, 0.9, -0.1))
    empty = np.zeros(0, dtype=np.int64)
    alignment = ReferenceAlignment(units, words, Alignment(empty, empty, empty, empty, np.zeros(0),
                                                           np.zeros(0), 0.0, 0),
                                   alignment_targets(ref, Vocabulary()))
    audio = np.zeros(int((t + 1) * 16000), np.float32)
    if pause_after_word is not None:
        audio[8000:int(t * 16000)] = np.random.default_rng(0).normal(0, 0.1, int(t * 16000) - 8000)
        audio[int(pause[0] * 16000):int(pause[1] * 16000)] = 0
        sound = np.array([[u.start, u.end] for u in units])
        alignment = replace(alignment, sound=sound, held=sound[:, 1] - sound[:, 0])
    return AssessmentContext(ref, alignment, audio, 16000)


def natural_counts(unit):
    """How long a good reciter holds each unit, in counts (madd: its length, as measured)."""
    for rule in unit.rules:
        if rule.family == "madd":
            return rule.harakat
        if rule.family == "ghunnah":
            return 2.0
        if rule.family == "shadda":
            return 1.8
    # a short syllable: its vowel held one count once scaled as the pace scales it
    return 1 / SHORT_VOWELS_PER_COUNT if is_short_syllable(unit.phonemes) else 0.6


@pytest.fixture(scope="module")
def ref():
    return build_reference("2:27")


def test_a_well_paced_recitation_has_no_findings(ref):
    ctx = synthetic_context(ref, natural_counts)
    assert ctx.pace.overall().harakah_s == pytest.approx(COUNT)  # from the natural madds
    assert check_madd(ctx) == [] and check_ghunnah(ctx) == [] and check_shadda(ctx) == []


def test_a_natural_madd_held_twice_as_long_is_found_among_few_madds():
    """2:2 has four natural madds before its end. Held 1.6, 4, 2.4 and 2.4 counts, the one held
    twice as long is found: it cannot hide by raising the count it is measured with (the madds'
    median alone would be 1.2 counts, making it 3.3 of them). Held 2, nothing is reported."""
    ref = build_reference("2:2")
    naturals = [u.index for u in ref.units[:-1] if any(r.kind == "natural" for r in u.rules)]
    assert len(naturals) == 4

    def held(target_counts):
        lengths = dict(zip(naturals, (1.6, target_counts, 2.4, 2.4)))
        return lambda u: lengths.get(u.index, natural_counts(u))

    [finding] = check_madd(synthetic_context(ref, held(4.0)))
    assert (finding.unit_index, finding.problem) == (naturals[1], "too_long")
    assert check_madd(synthetic_context(ref, held(2.0))) == []


def test_a_short_monfasel_madd_is_found(ref):
    target = next(u for u in ref.units if any(r.kind == "monfasel" for r in u.rules))
    ctx = synthetic_context(ref, lambda u: 1.0 if u.index == target.index else natural_counts(u))
    [finding] = check_madd(ctx)
    assert (finding.unit_index, finding.problem, finding.expected) == (target.index, "too_short", 4)
    assert finding.measured < 2 and finding.severity == "major"


def test_a_stretched_natural_madd_is_found(ref):
    target = next(u for u in ref.units if any(r.kind == "natural" for r in u.rules))
    ctx = synthetic_context(ref, lambda u: 5.0 if u.index == target.index else natural_counts(u))
    [finding] = check_madd(ctx)
    assert (finding.unit_index, finding.problem) == (target.index, "too_long")


def natural_madd_ending_a_word(ref):
    """A natural madd at the end of a word (or before its last consonant) that is not the last."""
    return next(u for u in ref.units if any(r.kind == "natural" for r in u.rules)
                and u.index >= ref.words[u.word_index].units[1] - 2 and u.word_index + 1 < len(ref.words))


def test_a_madd_before_a_breath_is_not_judged(ref):
    """A stop inside the ayah makes the madd before it 'aared: 2, 4 or 6 counts are all allowed."""
    target = natural_madd_ending_a_word(ref)
    long = lambda u: 5.0 if u.index == target.index else natural_counts(u)
    [finding] = check_madd(synthetic_context(ref, long, pause_after_word=target.word_index + 1))
    assert finding.unit_index == target.index  # a pause elsewhere changes nothing
    assert check_madd(synthetic_context(ref, long, pause_after_word=target.word_index)) == []


def test_an_idgham_after_a_stop_is_not_judged():
    ref = build_reference("2:5")  # hudan | min: the tanween merges into the meem with ghunnah
    target = next(u for u in ref.units if any(r.kind == "idgham" for r in u.rules))
    short = lambda u: 0.4 if u.index == target.index else natural_counts(u)
    [finding] = check_ghunnah(synthetic_context(ref, short, pause_after_word=0))
    assert finding.unit_index == target.index
    assert check_ghunnah(synthetic_context(ref, short, pause_after_word=target.word_index - 1)) == []


@pytest.mark.parametrize("paused", [True, False])
def test_a_madd_before_a_pause_a_live_stream_is_in_is_not_judged(ref, paused):
    """Live, at a pause: nothing after the word is timed yet, the audio so far ends in the pause;
    the madd is at a stop (2-6 counts). Going on without a pause, it is judged."""
    target = natural_madd_ending_a_word(ref)
    long = lambda u: 5.0 if u.index == target.index else natural_counts(u)
    ctx = synthetic_context(ref, long, pause_after_word=target.word_index if paused else len(ref.words) - 2)
    next_unit = ref.words[target.word_index].units[1]
    ctx.alignment.sound[next_unit:] = np.nan  # the window has timed nothing after the word
    pause_end = int((ctx.alignment.sound[next_unit - 1, 1] + 0.5) * 16000)
    ctx.audio = ctx.audio[:pause_end]  # the audio so far: the word, then half a second
    findings = check_madd(ctx)
    assert [f.unit_index for f in findings] == ([] if paused else [target.index])


def test_units_a_live_stream_has_not_reached_are_skipped(ref):
    """A stream judges a word while later units have no timing (NaN): no crash on them."""
    target = next(u for u in ref.units if any(r.kind == "ikhfaa" for r in u.rules))
    short = lambda u: 0.4 if u.index == target.index else natural_counts(u)
    ctx = synthetic_context(ref, short, pause_after_word=len(ref.words) - 2)
    ctx.alignment.sound[target.index + 3:] = np.nan
    ctx.alignment.sound[: target.index - 3] = np.nan
    [finding] = check_ghunnah(ctx)
    assert finding.unit_index == target.index


def test_a_ghunnah_cut_short_is_found(ref):
    target = next(u for u in ref.units if any(r.kind == "ikhfaa" for r in u.rules))
    ctx = synthetic_context(ref, lambda u: 0.4 if u.index == target.index else natural_counts(u))
    [finding] = check_ghunnah(ctx)
    assert finding.unit_index == target.index and finding.rule_tag == "ghunnah:ikhfaa"


def test_words_with_content_errors_are_not_judged(ref):
    target = next(u for u in ref.units if any(r.kind == "monfasel" for r in u.rules))
    ctx = synthetic_context(ref, lambda u: 1.0 if u.index == target.index else natural_counts(u))
    ctx.skip_words = {target.word_index}
    assert check_madd(ctx) == []


def test_time_stretch_keeps_pitch_and_scales_length():
    t = np.arange(8000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    for factor in (0.4, 2.5):
        out = time_stretch(tone, factor)
        assert out.size == round(tone.size * factor)
        spectrum = np.abs(np.fft.rfft(out[400:-400]))
        assert np.fft.rfftfreq(out.size - 800, 1 / 16000)[spectrum.argmax()] == pytest.approx(200, abs=5)
    longer = stretch_span(tone, 0.1, 0.3, 2.0)
    assert longer.size == tone.size + 0.2 * 16000 - 2 * int(0.008 * 16000)  # two crossfades
    joined = crossfade_join([tone[:4000], tone[4000:]])
    assert joined.size == tone.size - int(0.008 * 16000)


def test_sifat_heads_report_a_ghunnah_without_nasality(ref):
    from iqrah.assess.sifat import SifaVerdict, check_sifat

    ctx = synthetic_context(ref, natural_counts)
    target = next(u for u in ref.units if any(r.kind == "ikhfaa" for r in u.rules))
    verdicts = {target.index: {"ghonna": SifaVerdict("maghnoon", "not_maghnoon", 0.95)}}
    [finding] = check_sifat(ctx, verdicts)
    assert (finding.unit_index, finding.problem, finding.rule_tag) == (target.index, "not_nasal", "ghunnah:ikhfaa")
    unsure = {target.index: {"ghonna": SifaVerdict("maghnoon", "not_maghnoon", 0.6)}}
    assert check_sifat(ctx, unsure) == []


def test_a_shadda_no_longer_than_the_single_letter_is_found(ref):
    target = next(u for u in ref.units if any(r.family == "shadda" for r in u.rules))
    single = natural_counts(next(u for u in ref.units if is_short_syllable(u.phonemes)))
    ctx = synthetic_context(ref, lambda u: 0.7 * single if u.index == target.index else natural_counts(u))
    [finding] = check_shadda(ctx)
    assert (finding.unit_index, finding.problem) == (target.index, "not_held")


def test_a_qalqalah_without_release_is_found_except_at_the_recordings_end():
    """112:3 in silence (no release anywhere): the sughra of يَلِدْ is reported; the kubra of
    يُولَدْ, the recording's last sound, is not judged (its release is lost in the reverberation
    or the cut, as for a third of correct ones on train)."""
    ref = build_reference("112:3")
    kinds = {u.index: r.kind for u in ref.units for r in u.rules if r.family == "qalqalah"}
    assert sorted(kinds.values()) == ["kubra", "sughra"]
    findings = check_qalqalah(synthetic_context(ref, natural_counts))
    assert [(f.unit_index, f.problem) for f in findings] == [
        (next(i for i, k in kinds.items() if k == "sughra"), "no_burst")]


def test_a_live_window_counts_with_the_madds_heard_before_it(ref):
    """A live window starts a few words back: the reciter's count still comes from the natural
    madds of the words judged before it (``earlier``), as the final report's does."""
    from iqrah.assess.pace import PaceTracker

    window_from = ref.words[len(ref.words) // 2].units[0]
    # slower at first: natural madds of 3 counts, then of 2
    slowing = lambda u: (3.0 if u.index < window_from else 2.0) if any(
        r.kind == "natural" for r in u.rules) else natural_counts(u)
    ctx = synthetic_context(ref, slowing, pause_after_word=len(ref.words) - 2)
    held = ctx.held.copy()
    held[:window_from] = np.nan  # the window has not timed the first half
    earlier = {u: (ctx.alignment.units[u].start, float(ctx.held[u])) for u in range(window_from)}
    t = ctx.alignment.units[window_from + 2].start
    whole = PaceTracker(ref, ctx.alignment, ctx.held).at(t)
    assert PaceTracker(ref, ctx.alignment, held, earlier).at(t) == whole
    assert PaceTracker(ref, ctx.alignment, held).at(t) != whole  # from fewer madds, or short vowels
