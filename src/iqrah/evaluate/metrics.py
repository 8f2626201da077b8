"""Error rates between phoneme strings."""

from __future__ import annotations

import itertools

from Levenshtein import distance


def collapse_runs(phonemes: str) -> str:
    """Merge runs of one letter (``اااا`` -> ``ا``): what a collapsed-target CTC model emits."""
    return "".join(char for char, _ in itertools.groupby(phonemes))


def phoneme_error_rate(hypothesis: str, reference: str, *, collapse: bool = True) -> float:
    """Edit distance over reference length (a fraction; may exceed 1 for long garbage)."""
    if collapse:
        hypothesis, reference = collapse_runs(hypothesis), collapse_runs(reference)
    if not reference:
        return float(bool(hypothesis))
    return distance(hypothesis, reference) / len(reference)
