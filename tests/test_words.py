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
