"""Word and unit timings from forced alignment of a Reference, on planted posteriors."""

from __future__ import annotations

import numpy as np
import pytest

from iqrah.acoustic import Vocabulary
from iqrah.align import AlignmentError
from iqrah.align.words import EDGE_PAD_S, align_reference, alignment_targets
from iqrah.evaluate.metrics import collapse_runs, phoneme_error_rate
from iqrah.quran import build_reference

FRAME = 0.04


def planted_log_probs(token_ids, spans, n_frames, vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_frames, vocab_size)) * 0.3
    logits[:, 0] += 4
    for token, (a, b) in zip(token_ids, spans):
        logits[a:b, token] += 8
    return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)


def test_targets_collapse_runs_and_remember_units():
    ref = build_reference("1:2")
    vocab = Vocabulary()
    targets = alignment_targets(ref, vocab)
    assert vocab.decode(targets.ids) == collapse_runs(ref.phonemes)
    full = alignment_targets(ref, vocab, collapse=False)
    assert vocab.decode(full.ids) == ref.phonemes
    # every token's unit contains that token's letter
    for token, unit in zip(targets.ids, targets.unit_of_token):
        assert vocab.tokens[token] in ref.units[unit].phonemes


def test_word_boundaries_follow_planted_sounds():
    ref = build_reference("1:2")
    vocab = Vocabulary()
    targets = alignment_targets(ref, vocab)
    word_of_token = [ref.units[u].word_index for u in targets.unit_of_token]
    spans, t, word_first_frame = [], 10, {}
    for i, word in enumerate(word_of_token):
        if i and word != word_of_token[i - 1]:
            t += 6  # a pause of 6 frames (240 ms) between words
        word_first_frame.setdefault(word, t)
        spans.append((t, t + 2))
        t += 3  # one blank frame between tokens
    log_probs = planted_log_probs(targets.ids, spans, t + 10, len(vocab))
    result = align_reference(log_probs, ref, vocab, FRAME, offset_s=1.0)
    for word in result.words:
        sound = word_first_frame[word.index] * FRAME
        expected = sound - 3 * FRAME if word.index else sound - EDGE_PAD_S
        assert word.start == pytest.approx(1.0 + expected, abs=1e-6)
        assert word.end > word.start and word.posterior > 0.9
    for unit in result.units:
        assert unit.end >= unit.start
    assert [w.index for w in result.words] == [0, 1, 2, 3]


def test_too_short_audio_is_an_alignment_error():
    ref = build_reference("1:2")
    vocab = Vocabulary()
    with pytest.raises(AlignmentError, match="too few"):
        align_reference(np.zeros((5, len(vocab)), np.float32), ref, vocab, FRAME)


def test_phoneme_error_rate():
    assert phoneme_error_rate("ابت", "ابت") == 0
    assert phoneme_error_rate("اات", "ابت", collapse=False) == pytest.approx(1 / 3)
    assert phoneme_error_rate("ااابت", "ابت") == 0  # runs collapse
    assert phoneme_error_rate("", "ابت") == 1


def plant_recitation(ref, vocab, heard_words, pause_after=()):
    """Spikes for the reference words in the order ``heard_words`` (repeats allowed)."""
    targets = alignment_targets(ref, vocab)
    word_of_token = np.array([ref.units[u].word_index for u in targets.unit_of_token])
    ids, spans, starts, ends, t = [], [], [], [], 10
    for k, word in enumerate(heard_words):
        starts.append(t)
        for token in targets.ids[word_of_token == word]:
            ids.append(token)
            spans.append((t, t + 2))
            t += 3
        ends.append(t)
        t += 15 if k in pause_after else 1
    return planted_log_probs(ids, spans, t + 10, len(vocab)), starts, ends


def test_a_restart_is_found_and_words_keep_their_first_occurrence():
    ref = build_reference("1:2")
    vocab = Vocabulary()
    heard = [0, 1, 2, 1, 2, 3]  # stops after word 2, goes back to word 1
    log_probs, starts, _ = plant_recitation(ref, vocab, heard, pause_after={2})
    result = align_reference(log_probs, ref, vocab, FRAME)
    assert result.recited == heard
    assert result.restarts == [(1, 2)]
    # a word starts where it was first said; word 2 ends where the recitation went on from it
    for word, first in ((0, 0), (1, 1), (2, 2), (3, 5)):
        assert result.words[word].start == pytest.approx(starts[first] * FRAME, abs=EDGE_PAD_S + 0.01)
    assert result.words[2].end > starts[4] * FRAME
    assert result.words[1].end < starts[2] * FRAME + 0.1
    # the units of word 2 are timed in its second occurrence, the one followed by word 3
    unit = ref.words[2].units[0]
    assert result.units[unit].start == pytest.approx(starts[4] * FRAME, abs=0.1)
    # without restarts the same audio forces every repeated word onto one occurrence
    plain = align_reference(log_probs, ref, vocab, FRAME, restarts=False)
    assert plain.recited == [0, 1, 2, 3] and plain.restarts == []


def test_a_recitation_in_order_has_no_restart():
    ref = build_reference("1:2")
    vocab = Vocabulary()
    log_probs, starts, _ = plant_recitation(ref, vocab, [0, 1, 2, 3])
    result = align_reference(log_probs, ref, vocab, FRAME)
    assert result.recited == [0, 1, 2, 3] and result.restarts == []
    for word, first in zip(result.words[1:], starts[1:]):
        assert word.start == pytest.approx(first * FRAME, abs=2 * FRAME)


@pytest.mark.parametrize("pause_frames, reported", [(1, True), (15, False)])
def test_a_restart_without_a_stop_is_a_repetition(pause_frames, reported):
    from iqrah.assess.content import ContentResult, WordContent, add_alignment_repeats

    ref = build_reference("1:2")
    vocab = Vocabulary()
    heard = [0, 1, 2, 2, 3]  # word 2 said twice
    log_probs, starts, ends = plant_recitation(ref, vocab, heard, pause_after={2} if pause_frames > 1 else set())
    # sound everywhere but in the pause (energy decides what a stop is)
    audio = np.random.default_rng(1).normal(0, 0.1, log_probs.shape[0] * 640).astype(np.float32)
    if pause_frames > 1:
        audio[(ends[2] + 3) * 640:(starts[3] - 3) * 640] = 0
    aligned = align_reference(log_probs, ref, vocab, FRAME, audio=audio)
    assert aligned.recited == heard
    (words, start, _, silence), = aligned.repeats()
    assert (silence > 0.2) == (not reported)
    assert words == [2] and start == pytest.approx(starts[3] * FRAME, abs=EDGE_PAD_S + 0.01)
    from iqrah.assess.content import ContentFinding

    # free decoding heard the second occurrence as extra material
    extra = ContentFinding("extra", (2,), "", ref.words[2].phonemes, (starts[3], ends[3]))
    content = ContentResult(per=0.0, words=[WordContent(w.index, w.phonemes, w.phonemes, 1, 0, 0)
                                            for w in ref.words], findings=[extra])
    add_alignment_repeats(content, aligned, 0.0, FRAME)
    kinds = [(f.kind, f.word_indices) for f in content.findings]
    # straight back is a repetition; going back after a stop (ibtida') is not a mistake at all
    assert kinds == ([("repeated", (2,))] if reported else [])
    if not reported:
        # the edit alignment of the decoding may as well call the first pass the extra one
        first_pass = ContentFinding("extra", (1,), "", ref.words[2].phonemes, (starts[2], ends[2]))
        content.findings = [first_pass]
        add_alignment_repeats(content, aligned, 0.0, FRAME)
        assert content.findings == []


def plant_with_gap_before(ref, vocab, word, gap_frames):
    """Spikes for every token in order, one blank frame apart, and ``gap_frames`` of blanks before
    the first token of ``word``; also the frame where that token's spike starts."""
    targets = alignment_targets(ref, vocab)
    word_of_token = [ref.units[u].word_index for u in targets.unit_of_token]
    spans, t, onset = [], 10, None
    for k, w in enumerate(word_of_token):
        if w == word and word_of_token[k - 1] != word:
            t += gap_frames
            onset = t
        spans.append((t, t + 1))
        t += 2
    return planted_log_probs(targets.ids, spans, t + 10, len(vocab)), onset


@pytest.mark.parametrize("spec, word, expected", [
    ("1:1", 1, "after the previous spike"),  # bismi | llaahi: the doubled lam is held before its spike
    ("56:18", 3, "at the spike"),  # ka'sin | mmin: the idgham ghunnah is the tanween held on
])
def test_a_held_sound_between_words_goes_to_the_word_it_belongs_to(spec, word, expected):
    ref = build_reference(spec)
    vocab = Vocabulary()
    log_probs, onset = plant_with_gap_before(ref, vocab, word, gap_frames=15)
    audio = np.random.default_rng(2).normal(0, 0.1, log_probs.shape[0] * 640).astype(np.float32)
    audio[: 9 * 640] *= 0.001  # silence before and after, sound all through the recitation
    audio[-9 * 640:] *= 0.001
    result = align_reference(log_probs, ref, vocab, FRAME, audio=audio)
    before, after = result.words[word - 1], result.words[word]
    assert before.end == pytest.approx(after.start)  # one boundary, no overlap
    spike = onset * FRAME
    if expected == "at the spike":
        assert after.start == pytest.approx(spike, abs=FRAME)
    else:
        assert spike - 16 * FRAME <= after.start <= spike - 13 * FRAME  # 15 frames before the spike
    for a, b in zip(result.words, result.words[1:]):
        assert a.end <= b.start + 1e-9


def test_a_last_spike_fired_late_in_the_silence_does_not_stretch_the_word():
    """A CTC model may fire the last token of a recitation well after the voice stopped (a
    final madd's spike at the very end of the recording): the word ends where its sound does."""
    ref = build_reference("1:2")
    vocab = Vocabulary()
    targets = alignment_targets(ref, vocab)
    spans, t = [], 10
    for _ in targets.ids[:-1]:
        spans.append((t, t + 2))
        t += 3
    voice_end = t  # frame where the voice stops
    spans.append((t + 12, t + 14))  # the last token fires 0.48 s later, in silence
    log_probs = planted_log_probs(targets.ids, spans, t + 20, len(vocab))
    audio = np.random.default_rng(2).normal(0, 0.1, log_probs.shape[0] * 640).astype(np.float32)
    audio[voice_end * 640:] *= 0.001
    result = align_reference(log_probs, ref, vocab, FRAME, audio=audio)
    assert result.words[-1].end == pytest.approx(voice_end * FRAME, abs=0.03)



def _align_with_held_madd(voiced: bool):
    """1:2 with the madd of ``لِلَّهِ`` (unit 7) held 1.2 s between the spike of its short vowel
    and the spike of its madd letter; ``voiced`` False: silence there instead."""
    ref = build_reference("1:2")
    vocab = Vocabulary()
    targets = alignment_targets(ref, vocab)
    spans, t = [], 10
    for unit in targets.unit_of_token:
        if unit == 7:
            hold_start = t
            t += 30
        spans.append((t, t + 1))
        t += 3
    log_probs = planted_log_probs(targets.ids, spans, t + 10, len(vocab))
    audio = np.random.default_rng(2).normal(0, 0.1, log_probs.shape[0] * 640).astype(np.float32)
    audio[: 9 * 640] *= 0.001
    audio[-9 * 640:] *= 0.001
    if not voiced:
        audio[(hold_start + 4) * 640: (hold_start + 26) * 640] *= 0.001
    return align_reference(log_probs, ref, vocab, FRAME, audio=audio)


def test_a_madd_is_measured_through_its_whole_held_vowel():
    """The model fires at a madd's short vowel and again at its end: all the sound between is the
    held vowel (no reciter pauses inside a madd), not only the 0.25 s a sound may run into a
    pause; silence between the two spikes is still not counted."""
    voiced, silent = _align_with_held_madd(True), _align_with_held_madd(False)
    assert voiced.held[7] >= 1.2
    assert voiced.held[7] - silent.held[7] == pytest.approx(22 * FRAME, abs=0.05)  # the silent frames
    assert voiced.held[6] < 0.5  # the shadda before does not take the held vowel
