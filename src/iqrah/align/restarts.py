"""Which words were recited, in order, when a reciter goes back and says some words again.

Reciters often stop, then restart a few words earlier (waqf and ibtida', or a learner correcting
themselves). A plain forced alignment must then squeeze the repeated audio into one word, and
every word of the repeated stretch lands on the wrong occurrence, seconds away.

This Viterbi runs over the usual CTC trellis of the reference tokens, with one more move: from
the end of word ``j`` (its last token or the blank after it) to the start of any word ``i <= j``,
at a cost of ``penalty`` nats. The best path then says what was recited, as a list of word
indices in the order they were heard (``[0, 1, 2, 3, 1, 2, 3, 4]`` for a restart at word 1).
Repeated audio that a plain alignment would have to hold on one token costs far more than the
penalty, so a restart is taken only where the audio says the words again.
"""

from __future__ import annotations

import numba
import numpy as np

from .ctc import end_state, min_frames, trellis

RESTART_PENALTY = 20.0  # nats per restart; an honest repeat of one word saves far more


def recited_words(log_probs: np.ndarray, tokens: np.ndarray, word_of_token: np.ndarray, blank: int = 0,
                  *, partial: bool = False, penalty: float = RESTART_PENALTY) -> list[int]:
    """Word indices (values of ``word_of_token``, in order) as heard, repeats included.

    ``word_of_token`` must be non-decreasing. Without a restart the result is each word once.
    """
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    word_of_token = np.asarray(word_of_token, dtype=np.int64)
    words, first_token = np.unique(word_of_token, return_index=True)
    last_token = np.append(first_token[1:] - 1, tokens.size - 1)
    in_order = [int(w) for w in words]
    if log_probs.shape[0] < 2 or (not partial and log_probs.shape[0] < min_frames(tokens)):
        return in_order  # nothing to choose (forced alignment says what is wrong)
    path = _viterbi_with_restarts(log_probs, tokens, blank, partial, first_token.astype(np.int64),
                                  last_token.astype(np.int64), float(penalty))
    return [int(words[k]) for k in _word_sequence(path, first_token, last_token)]


def _word_sequence(path: np.ndarray, first_token: np.ndarray, last_token: np.ndarray) -> list[int]:
    """Positions (in the word arrays) of the words the state path went through, in order."""
    token_word = np.repeat(np.arange(first_token.size), last_token - first_token + 1)
    sequence: list[int] = []
    restarted = False
    for t, state in enumerate(path):
        if t > 0 and state < path[t - 1]:  # only a restart moves back (it may land on a blank)
            restarted = True
        if state % 2 == 0:  # a blank belongs to no word
            continue
        word = int(token_word[(state - 1) // 2])
        if restarted:
            sequence.append(word)
            restarted = False
        elif not sequence or word > sequence[-1]:
            # in order, every word in between included (CTC emits every token, so none is skipped)
            sequence.extend(range(sequence[-1] + 1 if sequence else word, word + 1))
    return sequence


@numba.njit(cache=True, nogil=True)
def _viterbi_with_restarts(log_probs, tokens, blank, partial, first_token, last_token, penalty):
    n_frames = log_probs.shape[0]
    ext, can_skip = trellis(tokens, blank)
    n_states = ext.size
    n_words = first_token.size
    restart_word = np.full(n_states, -1, dtype=np.int64)  # states a restart may land on
    for w in range(n_words):
        restart_word[2 * first_token[w]] = w
        restart_word[2 * first_token[w] + 1] = w

    neg_inf = -np.inf
    prev = np.full(n_states, neg_inf)
    cur = np.empty(n_states)
    back = np.zeros((n_frames, n_states), dtype=np.int8)  # 0 stay, 1 next, 2 skip, 3 restart
    source = np.zeros((n_frames, n_words), dtype=np.int64)  # where a restart into word w came from
    best_from = np.empty(n_words)
    best_state = np.empty(n_words, dtype=np.int64)
    prev[0] = log_probs[0, ext[0]]
    prev[1] = log_probs[0, ext[1]]
    for t in range(1, n_frames):
        # best end of word j or any later word (a restart goes back from there to a word <= j)
        run_best, run_state = neg_inf, -1
        for w in range(n_words - 1, -1, -1):
            for s in (2 * last_token[w] + 1, 2 * last_token[w] + 2):
                if prev[s] > run_best:
                    run_best, run_state = prev[s], s
            best_from[w] = run_best - penalty
            best_state[w] = run_state
        for s in range(n_states):
            best = prev[s]  # the moves of ctc._viterbi (kept inline: a call here halves the speed)
            step = 0
            if s >= 1 and prev[s - 1] > best:
                best = prev[s - 1]
                step = 1
            if can_skip[s] and prev[s - 2] > best:
                best = prev[s - 2]
                step = 2
            w = restart_word[s]
            if w >= 0 and best_from[w] > best and best_state[w] != s:
                best = best_from[w]
                step = 3
                source[t, w] = best_state[w]
            cur[s] = best + log_probs[t, ext[s]] if best > neg_inf else neg_inf
            back[t, s] = step
        prev, cur = cur, prev

    path = np.empty(n_frames, dtype=np.int64)
    s = end_state(prev, partial)
    for t in range(n_frames - 1, -1, -1):
        path[t] = s
        step = back[t, s]
        if step == 3:
            s = source[t, restart_word[s]]
        else:
            s -= step
    return path
