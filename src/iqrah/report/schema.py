"""The assessment report (schema version 1.0): what ``iqrah analyze --json`` prints and the
stream's ``final`` message carries. Documented in docs/report.md; change the version on any
incompatible change."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

REPORT_VERSION = "1.0"

Verdict = Literal["correct", "tajweed_error", "content_error", "missing", "not_assessed"]
Severity = Literal["minor", "major"]


class Feedback(BaseModel):
    en: str
    ar: str


class SifaResult(BaseModel):
    expected: str
    predicted: str
    probability: float


class PhonemeResult(BaseModel):
    index: int = Field(description="index of the unit in the reference")
    phonemes: str
    start: float
    end: float
    confidence: float = Field(description="mean posterior of the unit's tokens (0-1)")
    gop: float = Field(description="goodness of pronunciation: mean log-ratio to the best class (<= 0)")
    rules: list[str] = []
    sifat: dict[str, SifaResult] | None = Field(default=None, description="with a model that has sifat heads")


class WordPitch(BaseModel):
    """The melody of a word: F0 of its voiced frames (YIN, 20 ms frames)."""

    median_hz: float | None = Field(description="median F0 of the voiced frames (None: none voiced)")
    range_hz: tuple[float, float] | None = Field(description="5th and 95th percentile of F0")
    voiced: float = Field(description="share of the word's frames with a pitch (0-1)")
    step_s: float = Field(description="time between two values of the contour")
    contour_hz: list[float | None] = Field(description="median F0 every step_s from the word's start, None where unvoiced")


class WordResult(BaseModel):
    index: int
    surah: int
    ayah: int
    number: int
    text: str
    start: float | None
    end: float | None
    verdict: Verdict
    confidence: float
    phonemes: list[PhonemeResult] = []
    pitch: WordPitch | None = None


class ContentError(BaseModel):
    kind: Literal["missing", "extra", "substituted", "repeated"]
    word_indices: list[int] = Field(description="reference words concerned (for extra: the word it follows)")
    expected: str = Field(description="reference phonemes (empty for extra material)")
    heard: str = Field(description="decoded phonemes")
    time_range: tuple[float, float] | None = None
    feedback: Feedback


class Violation(BaseModel):
    rule: str = Field(description="family:kind, e.g. madd:monfasel")
    problem: str = Field(description="too_short, too_long, no_burst, not_held, vowel_at_stop")
    word_index: int
    phoneme_index: int
    time_range: tuple[float, float]
    expected: str
    actual: str
    severity: Severity
    confidence: float
    feedback: Feedback


class Scores(BaseModel):
    profile: str
    pronunciation: float = Field(description="0-100, from alignment confidence (GOP)")
    tajweed: float = Field(description="0-100, from violations")
    content: float = Field(description="0-100, from the phoneme error rate of free decoding")
    overall: float


class Gate(BaseModel):
    per: float = Field(description="phoneme error rate of free decoding against the reference")
    threshold: float
    path: Literal["assessed", "content_mismatch"]


class WordProsody(BaseModel):
    index: int
    tempo_ratio: float | None = Field(description="the word's duration over the reference reciter's (> 1: slower)")
    melody_st: float | None = Field(description="mean distance of the key-free pitch contours (DTW), semitones")
    turn_st: list[float] | None = Field(description="rise (+) or fall (-) over the word: [reference, learner]")
    findings: list[str] = Field(description="rushed, slow, falls_where_reference_rises, rises_where_reference_falls")


class ProsodyScores(BaseModel):
    tempo: float | None
    rhythm: float | None
    melody: float | None
    overall: float | None


class Prosody(BaseModel):
    """Tempo, rhythm and melody against a reference reciter: guidance, not part of the scores."""

    reciter: str
    tempo_ratio: float | None = Field(description="the learner's speaking time over the reference's")
    npvi: list[float | None] = Field(description="rhythm (nPVI of phoneme durations): [learner, reference]")
    scores: ProsodyScores
    words: list[WordProsody]
    feedback: list[Feedback] = []


class Report(BaseModel):
    version: str = REPORT_VERSION
    spec: str
    model: str
    duration_s: float
    speech: list[tuple[float, float]] = []
    words: list[WordResult]
    content_errors: list[ContentError] = []
    violations: list[Violation] = []
    scores: Scores
    gate: Gate
    pace: dict[str, float] = Field(default_factory=dict, description="harakah length and how it was measured")
    prosody: Prosody | None = Field(default=None, description="against a reference reciter, when one was chosen")
    timings_ms: dict[str, float] = Field(default_factory=dict)
