"""Scores from 0 to 100: pronunciation (alignment confidence), tajweed (violations), content
(the words judged wrong, missing or added), and an overall weighted sum whose weights depend on
the learner's profile."""

from __future__ import annotations

import math

from .schema import Scores

PROFILES = {
    # beginners are judged mostly on saying the right words clearly
    "beginner": {"content": 0.5, "pronunciation": 0.3, "tajweed": 0.2},
    # advanced learners are judged mostly on tajweed
    "advanced": {"content": 0.3, "pronunciation": 0.3, "tajweed": 0.4},
}
SEVERITY_WEIGHT = {"major": 1.0, "minor": 0.5}


CLEAR_RATIO = 0.5  # the expected phoneme at least half as likely as the model's best guess: clear


def pronunciation_score(gops: list[float]) -> float:
    """Mean credit per phoneme, from exp(GOP) (1 where the model's best guess is the expected
    phoneme): full credit down to CLEAR_RATIO, less below it. Near-ties between two sounds say
    more about the model than the learner, and counted in full they moved the same recitation's
    score from take to take."""
    if not gops:
        return 0.0
    return 100 * sum(min(1.0, math.exp(g) / CLEAR_RATIO) for g in gops) / len(gops)


def tajweed_score(severities: list[str], confidences: list[float], checks: int) -> float:
    if checks <= 0:
        return 100.0
    penalty = sum(SEVERITY_WEIGHT[s] * c for s, c in zip(severities, confidences))
    return max(0.0, 100 * (1 - penalty / checks))


def content_score(word_errors: int, words: int) -> float:
    """The share of the ayah's words said right. Counted in words, not phonemes: a sound the
    model heard a little differently in a word judged right costs nothing (it moved the score of
    the same recitation from take to take, with no finding to say why)."""
    return max(0.0, 100 * (1 - word_errors / words)) if words else 0.0


def mismatch_content_score(per: float) -> float:
    """A recording that is not the chosen ayah: how much of it matched, in phonemes."""
    return max(0.0, 100 * (1 - per))


def score(profile: str, *, pronunciation: float, tajweed: float, content: float) -> Scores:
    if profile not in PROFILES:
        raise ValueError(f"unknown scoring profile {profile!r}: use one of {', '.join(PROFILES)}")
    weights = PROFILES[profile]
    overall = (weights["content"] * content + weights["pronunciation"] * pronunciation
               + weights["tajweed"] * tajweed)
    return Scores(profile=profile, pronunciation=round(pronunciation, 1), tajweed=round(tajweed, 1),
                  content=round(content, 1), overall=round(overall, 1))
