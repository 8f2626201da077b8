"""Error rates between phoneme strings."""

from __future__ import annotations

from Levenshtein import distance

from ..acoustic.vocab import collapse_runs

__all__ = ["collapse_runs", "phoneme_error_rate"]


def phoneme_error_rate(hypothesis: str, reference: str, *, collapse: bool = True) -> float:
    """Edit distance over reference length (a fraction; may exceed 1 for long garbage)."""
    if collapse:
        hypothesis, reference = collapse_runs(hypothesis), collapse_runs(reference)
    if not reference:
        return float(bool(hypothesis))
    return distance(hypothesis, reference) / len(reference)
