"""The token set of every acoustic model: the phonetizer's phoneme letters plus the CTC blank.

Token ids are stable: blank is 0 and the letters follow in the order ``quran-transcript``
declares them, so a model card only needs to store this list to be checked against it.
"""

from __future__ import annotations

import itertools
from dataclasses import astuple
from functools import cache
from typing import get_args

import numpy as np
from quran_transcript import SifaOutput
from quran_transcript import alphabet as alph

BLANK = "<blank>"


@cache
def phoneme_vocab() -> tuple[str, ...]:
    letters = tuple(dict.fromkeys(astuple(alph.phonetics)))
    return (BLANK, *letters)


def collapse_runs(phonemes: str) -> str:
    """Merge runs of one letter (``اااا`` -> ``ا``): what a collapsed-target CTC model emits."""
    return "".join(char for char, _ in itertools.groupby(phonemes))


def sifa_labels(level: str) -> tuple[str, ...]:
    """The English labels of a sifa level in the order of a sifat head's token ids (from 1)."""
    return get_args(SifaOutput.model_fields[level].annotation)


def best_path(log_probs, blank: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Greedy CTC decoding: argmax per frame, repeats merged, blanks dropped.
    Returns the token ids and the frame where each one fired."""
    best = np.asarray(log_probs).argmax(axis=1)
    fired = (best != blank) & np.concatenate(([True], best[1:] != best[:-1]))
    frames = np.flatnonzero(fired)
    return best[frames], frames


class Vocabulary:
    """Maps phoneme strings to token ids and back."""

    def __init__(self, tokens: tuple[str, ...] | list[str] = ()):
        self.tokens = tuple(tokens) or phoneme_vocab()
        if self.tokens[0] != BLANK:
            raise ValueError(f"token 0 must be the blank {BLANK!r}")
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self.blank = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, phonemes: str) -> list[int]:
        try:
            return [self._ids[c] for c in phonemes]
        except KeyError as exc:
            raise ValueError(f"phoneme {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.tokens[i] for i in ids if i != self.blank)

    def greedy(self, log_probs) -> str:
        """Best-path decoding: argmax per frame, merge repeats, drop blanks."""
        return self.decode(best_path(log_probs, self.blank)[0])
