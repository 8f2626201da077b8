"""CTC forced alignment: the single best path of a known token sequence through (T, V) log-probs.

The standard CTC trellis has 2S+1 states (a blank before, between and after the S tokens). A path
moves each frame to the same state, the next one, or skips a blank between two different
tokens; two equal tokens in a row must have a blank between them, so they need an extra frame.
The Viterbi pass runs in numba (T=10,000 x S=2,000 takes a fraction of a second) and keeps one
byte of back-pointer per cell.

Confidence per token: the mean posterior of the token over its frames, and a goodness of
pronunciation (GOP): the mean log-likelihood ratio between the token and the best class at each
of its frames (0 when the model agrees the token is there; very negative when it hears another).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


class AlignmentError(ValueError):
    """The tokens cannot be aligned to these frames (too few frames, bad shapes or ids)."""


@dataclass(frozen=True)
class Alignment:
    """Token ``i`` occupies frames ``starts[i]`` to ``ends[i]`` (exclusive) of the log-probs.

    ``score`` is the log-probability of the best path; ``blank_before[i]`` is the first frame of
    the blank run before token ``i`` (equal to ``starts[i]`` when there is none).
    """

    tokens: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    blank_before: np.ndarray
    mean_posterior: np.ndarray
    gop: np.ndarray
    score: float
    num_frames: int
    #: tokens the path reached (all of them unless ``partial``; later ones have start -1)
    num_aligned: int = -1

    def __len__(self) -> int:
        return len(self.tokens)

    def times(self, frame_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of each token in seconds."""
        return self.starts * frame_seconds, self.ends * frame_seconds


def min_frames(tokens: np.ndarray) -> int:
    """Frames a CTC path needs: one per token plus one blank between equal neighbours."""
    tokens = np.asarray(tokens)
    return int(tokens.size + np.count_nonzero(tokens[1:] == tokens[:-1]))


def forced_align(log_probs: np.ndarray, tokens, blank: int = 0, *, partial: bool = False) -> Alignment:
    """Align ``tokens`` (ids, no blanks) to ``log_probs`` (T, V), log-softmax over V.

    With ``partial`` the path may stop after any token: the audio holds a prefix of the tokens
    (a live stream that has not reached the end yet). Tokens past the end get start -1.
    """
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
    tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64).reshape(-1))
    if log_probs.ndim != 2:
        raise AlignmentError(f"log_probs must be (frames, vocab), got shape {log_probs.shape}")
    n_frames, vocab = log_probs.shape
    if tokens.size == 0:
        raise AlignmentError("nothing to align: the token sequence is empty")
    if tokens.min() < 0 or tokens.max() >= vocab or np.any(tokens == blank):
        raise AlignmentError(f"token ids must be in 0..{vocab - 1} and not the blank ({blank})")
    need = min_frames(tokens)
    if n_frames < need and not partial:
        raise AlignmentError(
            f"{n_frames} frames are too few for {tokens.size} tokens: CTC needs at least {need} "
            "(the audio is shorter than the text it should contain)")
    if n_frames == 0:
        raise AlignmentError("nothing to align to: no frames")
    states, score = _viterbi(log_probs, tokens, blank, partial)
    starts, ends, blank_before = _token_spans(states, tokens.size)
    aligned = int(np.count_nonzero(starts >= 0))
    posterior, gop = _confidence(log_probs, tokens, starts, ends)
    return Alignment(tokens=tokens, starts=starts, ends=ends, blank_before=blank_before,
                     mean_posterior=posterior, gop=gop, score=float(score), num_frames=n_frames,
                     num_aligned=aligned)


@numba.njit(cache=True, nogil=True)
def trellis(tokens, blank):
    """The 2S+1 state labels (blank, token, blank, ...) and the states a path may reach by
    skipping the blank before them (not between two equal tokens)."""
    n_states = 2 * tokens.size + 1
    ext = np.full(n_states, blank, dtype=np.int64)
    for i in range(tokens.size):
        ext[2 * i + 1] = tokens[i]
    can_skip = np.zeros(n_states, dtype=np.bool_)
    for s in range(3, n_states, 2):
        can_skip[s] = ext[s] != ext[s - 2]
    return ext, can_skip


@numba.njit(cache=True, nogil=True)
def end_state(final, partial):
    """Where the best path ends: the last token or the blank after it, or anywhere if partial."""
    last = final.size - 1
    if partial:
        return int(np.argmax(final))
    if final.size >= 2 and final[last - 1] > final[last]:
        return last - 1
    return last


@numba.njit(cache=True, nogil=True)
def _viterbi(log_probs, tokens, blank, partial):
    n_frames = log_probs.shape[0]
    ext, can_skip = trellis(tokens, blank)
    n_states = ext.size

    neg_inf = -np.inf
    prev = np.full(n_states, neg_inf)
    cur = np.empty(n_states)
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    prev[0] = log_probs[0, ext[0]]
    prev[1] = log_probs[0, ext[1]]
    for t in range(1, n_frames):
        # states that cannot reach the end in the frames left, or be reached yet, stay -inf
        for s in range(n_states):
            best = prev[s]  # stay, come from the state before, or skip a blank
            step = 0
            if s >= 1 and prev[s - 1] > best:
                best = prev[s - 1]
                step = 1
            if can_skip[s] and prev[s - 2] > best:
                best = prev[s - 2]
                step = 2
            cur[s] = best + log_probs[t, ext[s]] if best > neg_inf else neg_inf
            back[t, s] = step
        prev, cur = cur, prev

    last = end_state(prev, partial)
    score = prev[last]
    path = np.empty(n_frames, dtype=np.int64)
    s = last
    for t in range(n_frames - 1, -1, -1):
        path[t] = s
        s -= back[t, s]
    return path, score


@numba.njit(cache=True)
def _token_spans(path, n_tokens):
    starts = np.full(n_tokens, -1, dtype=np.int64)
    ends = np.zeros(n_tokens, dtype=np.int64)
    blank_before = np.full(n_tokens, -1, dtype=np.int64)
    blank_start = 0
    for t in range(path.size):
        s = path[t]
        if s % 2 == 1:
            i = (s - 1) // 2
            if starts[i] < 0:
                starts[i] = t
                blank_before[i] = blank_start if (t > 0 and path[t - 1] == s - 1) else t
            ends[i] = t + 1
        elif t == 0 or path[t - 1] != s:
            blank_start = t
    return starts, ends, blank_before


def _confidence(log_probs, tokens, starts, ends):
    posterior = np.empty(tokens.size, dtype=np.float32)
    gop = np.empty(tokens.size, dtype=np.float32)
    best = log_probs.max(axis=1)
    for i, (token, a, b) in enumerate(zip(tokens, starts, ends)):
        if a < 0:  # not reached by a partial path
            posterior[i], gop[i] = 0.0, 0.0
            continue
        own = log_probs[a:b, token]
        posterior[i] = float(np.exp(own).mean())
        gop[i] = float((own - best[a:b]).mean())
    return posterior, gop
