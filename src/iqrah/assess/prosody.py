"""Prosody against a reference reciter: tempo, rhythm and melody, word by word.

Guidance, never a verdict: a learner is not wrong for reciting in another maqam or at another
pace, so prosody is scored apart from content and tajweed and gives advice only where it
differs clearly from the reference.

* **Tempo**: each word's duration against the reference's (ratio > 1: slower). A word held
  ``TEMPO_SLOW`` longer, or said ``TEMPO_FAST`` quicker, gets a finding ("you rushed ...").
* **Rhythm**: the normalised pairwise variability index (nPVI) of successive phoneme durations,
  over the ayah and per word: how much long and short sounds alternate.
* **Melody**: F0 as semitones around the reciter's own median (so a higher or lower voice, or
  another key, compares equal), each word's contour against the reference's by dynamic time
  warping within a band (``BAND``): the mean distance in semitones. Where the reference rises and
  the learner falls (or the reverse) by ``TURN_ST``, a finding says so.

The same function judges a word live (the stream) and in the final report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

TEMPO_SLOW = 1.2  # a word this many times the reference's duration is slow
TEMPO_FAST = 1 / 1.2
BAND = 0.2  # DTW band: a share of the longer contour
TURN_ST = 2.0  # a rise or fall of a word's contour: this many semitones from its start to its end
MELODY_SCALE_ST = 3.0  # a mean distance of this many semitones halves the melody score
MIN_VOICED = 5  # frames of voiced F0 a word needs before its melody is compared


@dataclass(frozen=True)
class Contour:
    """F0 in Hz every ``step_s`` from ``start_s`` (NaN: unvoiced), and the median of the voiced
    frames of the whole recitation (the reciter's key)."""

    start_s: float
    step_s: float
    f0: np.ndarray

    @classmethod
    def from_pitch(cls, pitch) -> Contour:
        times = np.asarray(pitch.times)
        step = float(times[1] - times[0]) if times.size > 1 else 0.02
        return cls(float(times[0]) if times.size else 0.0, step, np.asarray(pitch.f0, dtype=float))

    @classmethod
    def from_entry(cls, entry: dict) -> Contour:
        f0 = np.array([np.nan if x is None else x for x in entry["f0"]], dtype=float)
        return cls(float(entry["start_s"]), float(entry["step_s"]), f0)

    def key_hz(self, until: float) -> float:
        """The reciter's key: the median F0 of the voiced frames up to ``until`` (s), so that a
        word gets the same key live, when nothing after it has been heard, as in the final report."""
        b = min(self.f0.size, int(np.floor((until - self.start_s) / self.step_s)) + 1)
        f0 = self.f0[:max(b, 0)]
        voiced = f0[np.isfinite(f0) & (f0 > 0)]
        return float(np.median(voiced)) if voiced.size else np.nan

    def semitones(self, start: float, end: float, key_hz: float) -> np.ndarray:
        """The voiced frames between ``start`` and ``end`` as semitones around ``key_hz``."""
        a = max(0, int(np.ceil((start - self.start_s) / self.step_s)))
        b = min(self.f0.size, int(np.floor((end - self.start_s) / self.step_s)) + 1)
        f0 = self.f0[a:b]
        f0 = f0[np.isfinite(f0) & (f0 > 0)]
        return 12 * np.log2(f0 / key_hz) if f0.size and np.isfinite(key_hz) else np.zeros(0)


def npvi(durations) -> float | None:
    """Normalised pairwise variability index (0: even; about 50-70 for speech)."""
    d = np.asarray([x for x in durations if x > 0], dtype=float)
    if d.size < 2:
        return None
    return float(100 * np.mean(np.abs(np.diff(d)) / ((d[1:] + d[:-1]) / 2)))


def dtw_distance(a: np.ndarray, b: np.ndarray, band: float = BAND) -> float:
    """Mean absolute difference along the best warping path within a Sakoe-Chiba band."""
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return np.nan
    width = max(int(np.ceil(band * max(n, m))), abs(n - m)) + 1
    return float(_dtw(np.asarray(a, np.float64), np.asarray(b, np.float64), width))


@numba.njit(cache=True)
def _dtw(a, b, width):
    n, m = a.size, b.size
    cost = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(max(1, i - width), min(m, i + width) + 1):
            best, count = cost[i - 1, j - 1], steps[i - 1, j - 1]
            if cost[i - 1, j] / max(steps[i - 1, j], 1) < best / max(count, 1):
                best, count = cost[i - 1, j], steps[i - 1, j]
            if cost[i, j - 1] / max(steps[i, j - 1], 1) < best / max(count, 1):
                best, count = cost[i, j - 1], steps[i, j - 1]
            cost[i, j] = best + abs(a[i - 1] - b[j - 1])
            steps[i, j] = count + 1
    return cost[n, m] / steps[n, m]


def _turn(st: np.ndarray) -> float:
    """How far a contour rises (+) or falls (-) from its first to its last third, in semitones."""
    k = max(1, st.size // 3)
    return float(np.median(st[-k:]) - np.median(st[:k]))


@dataclass
class WordProsody:
    index: int
    tempo_ratio: float | None  # learner's duration / reference's
    melody_st: float | None  # mean DTW distance of the contours, semitones
    turn: tuple[float, float] | None  # (reference, learner) rise (+) or fall (-), semitones
    findings: list[str]  # "rushed", "slow", "falls_where_reference_rises", "rises_where_reference_falls"

    def to_dict(self) -> dict:
        return {"index": self.index,
                "tempo_ratio": None if self.tempo_ratio is None else round(self.tempo_ratio, 2),
                "melody_st": None if self.melody_st is None else round(self.melody_st, 2),
                "turn_st": None if self.turn is None else [round(self.turn[0], 1), round(self.turn[1], 1)],
                "findings": self.findings}


def compare_word(index: int, span: tuple[float, float], contour: Contour,
                 ref_span: tuple[float, float], ref_contour: Contour) -> WordProsody:
    """One word of the learner (``span`` in their recording) against the reference's (the same
    code live and in the final report)."""
    (start, end), (ref_start, ref_end) = span, ref_span
    key_hz, ref_key_hz = contour.key_hz(end), ref_contour.key_hz(ref_end)
    ratio = (end - start) / (ref_end - ref_start) if end > start and ref_end > ref_start else None
    findings = []
    if ratio is not None and ratio < TEMPO_FAST:
        findings.append("rushed")
    elif ratio is not None and ratio > TEMPO_SLOW:
        findings.append("slow")
    mine = contour.semitones(start, end, key_hz)
    theirs = ref_contour.semitones(ref_start, ref_end, ref_key_hz)
    melody = turn = None
    if mine.size >= MIN_VOICED and theirs.size >= MIN_VOICED:
        melody = dtw_distance(mine, theirs)
        turn = (_turn(theirs), _turn(mine))
        if turn[0] >= TURN_ST and turn[1] <= -TURN_ST:
            findings.append("falls_where_reference_rises")
        elif turn[0] <= -TURN_ST and turn[1] >= TURN_ST:
            findings.append("rises_where_reference_falls")
    return WordProsody(index, ratio, melody, turn, findings)


@dataclass
class ProsodyResult:
    reciter: str
    words: list[WordProsody]
    tempo_ratio: float | None  # whole recitation: the learner's speaking time / the reference's
    npvi: tuple[float | None, float | None]  # (learner, reference) over the phonemes
    scores: dict[str, float]  # tempo, rhythm, melody, overall (0-100)

    def to_dict(self) -> dict:
        return {"reciter": self.reciter, "words": [w.to_dict() for w in self.words],
                "tempo_ratio": None if self.tempo_ratio is None else round(self.tempo_ratio, 2),
                "npvi": [None if x is None else round(x, 1) for x in self.npvi], "scores": self.scores}


def compare(reciter: str, words: dict[int, tuple[float, float]], phonemes: dict[int, tuple[float, float]],
            contour: Contour, entry: dict) -> ProsodyResult:
    """A learner's recitation (word and phoneme spans by index, their F0) against a reference
    reciter's ``entry`` (``iqrah.reciters.features``) of the same ayah."""
    ref_words = {int(i): (s, e) for i, s, e in entry["words"]}
    ref_phonemes = {int(i): (s, e) for i, s, e in entry["phonemes"]}
    ref_contour = Contour.from_entry(entry["pitch"])
    compared = [compare_word(i, span, contour, ref_words[i], ref_contour)
                for i, span in sorted(words.items()) if i in ref_words]
    both = [i for i in words if i in ref_words]
    mine_s = sum(words[i][1] - words[i][0] for i in both)
    ref_s = sum(ref_words[i][1] - ref_words[i][0] for i in both)
    tempo = mine_s / ref_s if mine_s > 0 and ref_s > 0 else None
    shared = sorted(i for i in phonemes if i in ref_phonemes)
    pvi = (npvi([phonemes[i][1] - phonemes[i][0] for i in shared]),
           npvi([ref_phonemes[i][1] - ref_phonemes[i][0] for i in shared]))
    return ProsodyResult(reciter, compared, tempo, pvi, _scores(compared, tempo, pvi))


def _scores(words: list[WordProsody], tempo: float | None, pvi) -> dict[str, float]:
    ratios = [w.tempo_ratio for w in words if w.tempo_ratio]
    # tempo: how far each word's duration is from the reference's, in log2 (1.25x: 64)
    tempo_score = 100 * np.exp(-2 * np.mean(np.abs(np.log2(ratios)))) if ratios else np.nan
    rhythm = 100 * np.exp(-abs(pvi[0] - pvi[1]) / 30) if None not in pvi else np.nan
    melody = [w.melody_st for w in words if w.melody_st is not None]
    melody_score = 100 * 0.5 ** (np.mean(melody) / MELODY_SCALE_ST) if melody else np.nan
    parts = {"tempo": tempo_score, "rhythm": rhythm, "melody": melody_score}
    known = [v for v in parts.values() if np.isfinite(v)]
    parts["overall"] = float(np.mean(known)) if known else np.nan
    return {k: (round(float(v), 1) if np.isfinite(v) else None) for k, v in parts.items()}


def spans_of(words) -> tuple[dict[int, tuple[float, float]], dict[int, tuple[float, float]]]:
    """Word and phoneme spans by index from report words (``WordResult``) that were timed."""
    word_spans = {w.index: (w.start, w.end) for w in words if w.start is not None}
    phoneme_spans = {p.index: (p.start, p.end) for w in words for p in w.phonemes}
    return word_spans, phoneme_spans


def prosody_applies(reference, entry: dict) -> bool:
    """A reference reciter's entry compares word by word with a recitation of the same single
    ayah (not a range, a word span, or the ayah with a basmala before it)."""
    return entry.get("spec") == reference.spec and not reference.includes_basmala
