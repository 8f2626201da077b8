"""CTC forced alignment against a brute-force search, and on synthetic posteriors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iqrah.align import AlignmentError, forced_align, min_frames


def collapse(path):
    """CTC's many-to-one map: merge repeats, then drop blanks (id 0)."""
    out = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    return [k for k in out if k != 0]


def brute_force(log_probs, tokens):
    """Best frame labelling whose CTC collapse equals ``tokens``, by enumerating all of them."""
    n_frames, vocab = log_probs.shape
    best_score, best_path = -np.inf, None
    for path in itertools.product(range(vocab), repeat=n_frames):
        if collapse(list(path)) == list(tokens):
            score = float(sum(log_probs[t, k] for t, k in enumerate(path)))
            if score > best_score:
                best_score, best_path = score, path
    return best_score, best_path


def spans_of(path, n_tokens):
    """Token spans from a frame labelling (token i = i-th run of non-blank labels)."""
    starts, ends, i = [], [], -1
    for t, k in enumerate(path):
        if k != 0 and (t == 0 or path[t - 1] != k):
            i += 1
            starts.append(t)
            ends.append(t + 1)
        elif k != 0:
            ends[i] = t + 1
    assert len(starts) == n_tokens
    return starts, ends


def random_log_probs(rng, n_frames, vocab):
    logits = rng.standard_normal((n_frames, vocab)) * 2
    return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(2, 4), st.data())
def test_matches_brute_force(seed, n_frames, vocab, data):
    rng = np.random.default_rng(seed)
    n_tokens = data.draw(st.integers(1, min(3, n_frames)))
    tokens = data.draw(st.lists(st.integers(1, vocab - 1), min_size=n_tokens, max_size=n_tokens))
    log_probs = random_log_probs(rng, n_frames, vocab)
    if n_frames < min_frames(tokens):
        with pytest.raises(AlignmentError):
            forced_align(log_probs, tokens)
        return
    score, path = brute_force(log_probs, tokens)
    result = forced_align(log_probs, tokens)
    assert result.score == pytest.approx(score, abs=1e-4)
    starts, ends = spans_of(path, len(tokens))
    assert result.starts.tolist() == starts
    assert result.ends.tolist() == ends


def planted(spans, n_frames, vocab, tokens, rng, strength=4.0):
    """Posteriors where token i clearly sounds in frames spans[i] and blank elsewhere."""
    logits = rng.standard_normal((n_frames, vocab)) * 0.5
    logits[:, 0] += strength
    for token, (a, b) in zip(tokens, spans):
        logits[a:b, token] += 2 * strength
    return (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float32)


def test_recovers_planted_boundaries():
    rng = np.random.default_rng(7)
    vocab, n_tokens = 43, 300
    tokens = rng.integers(1, vocab, n_tokens)
    spans, t = [], 5
    for _ in range(n_tokens):
        t += int(rng.integers(0, 4))  # blank gap, possibly none
        length = int(rng.integers(1, 8))
        spans.append((t, t + length))
        t += length
    for i in range(1, n_tokens):  # equal neighbours need a blank between them
        if tokens[i] == tokens[i - 1] and spans[i][0] == spans[i - 1][1]:
            tokens[i] = tokens[i] % (vocab - 1) + 1
    log_probs = planted(spans, t + 5, vocab, tokens, rng)
    result = forced_align(log_probs, tokens)
    assert result.starts.tolist() == [a for a, _ in spans]
    assert result.ends.tolist() == [b for _, b in spans]
    assert np.all(result.mean_posterior > 0.9)
    assert np.all(result.gop > -0.05)


def test_repeated_tokens_get_separate_spans():
    rng = np.random.default_rng(3)
    tokens = [5, 5, 5]
    spans = [(2, 4), (5, 7), (8, 10)]
    result = forced_align(planted(spans, 12, 10, tokens, rng), tokens)
    assert list(zip(result.starts.tolist(), result.ends.tolist())) == spans
    assert min_frames(tokens) == 5
    assert result.blank_before.tolist() == [0, 4, 7]


def test_a_wrong_token_has_low_confidence():
    rng = np.random.default_rng(4)
    spans = [(2, 6), (8, 12), (14, 18)]
    log_probs = planted(spans, 20, 10, [1, 2, 3], rng)
    good = forced_align(log_probs, [1, 2, 3])
    bad = forced_align(log_probs, [1, 7, 3])  # the middle sound is not what was said
    assert bad.gop[1] < -3 and good.gop[1] > -0.1
    assert bad.mean_posterior[1] < 0.05
    assert bad.score < good.score


def test_too_few_frames_is_a_clear_error():
    log_probs = np.log(np.full((3, 5), 0.2, dtype=np.float32))
    with pytest.raises(AlignmentError, match="too few"):
        forced_align(log_probs, [1, 2, 3, 4])
    with pytest.raises(AlignmentError, match="too few"):
        forced_align(log_probs, [1, 1, 2])  # needs a blank between the two 1s
    forced_align(log_probs, [1, 2, 3])


@pytest.mark.parametrize("tokens", [[], [0, 1], [9]])
def test_invalid_tokens_are_a_clear_error(tokens):
    with pytest.raises(AlignmentError):
        forced_align(np.zeros((10, 5), dtype=np.float32), tokens)


def test_long_input_aligns():
    rng = np.random.default_rng(0)
    log_probs = random_log_probs(rng, 10_000, 43)
    tokens = rng.integers(1, 43, 2000)
    result = forced_align(log_probs, tokens)
    assert np.all(np.diff(result.starts) > 0)
    assert np.all(result.ends > result.starts)
    assert result.ends[-1] <= 10_000


def test_partial_alignment_stops_where_the_audio_does():
    rng = np.random.default_rng(5)
    tokens = [3, 4, 5, 6, 7, 8]
    spans = [(2, 4), (5, 7), (8, 10)]  # only the first three were said so far
    log_probs = planted(spans, 14, 10, tokens[:3], rng)
    result = forced_align(log_probs, tokens, partial=True)
    assert result.num_aligned == 3
    assert list(zip(result.starts[:3].tolist(), result.ends[:3].tolist())) == spans
    assert result.starts[3:].tolist() == [-1, -1, -1]
    full = forced_align(log_probs, tokens[:3])
    assert result.score == pytest.approx(full.score)
    # all tokens said: the partial path is the full one
    assert forced_align(log_probs, tokens[:3], partial=True).num_aligned == 3


def test_partial_alignment_accepts_fewer_frames_than_tokens():
    log_probs = np.log(np.full((2, 5), 0.2, dtype=np.float32))
    assert forced_align(log_probs, [1, 2, 3, 4], partial=True).num_aligned <= 2
