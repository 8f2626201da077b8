"""The training recipe's speech-length augmentation (train/iqrah_train): phoneme onsets from a
model's output, and held sounds shortened between them without changing the pitch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT

pytest.importorskip("scipy", reason="the training augmentation needs scipy (the [train] extra)")
sys.path.insert(0, str(ROOT / "train"))
from iqrah_train.augment import SPEECH, augment_audio, squeeze_held, wsola  # noqa: E402
from iqrah_train.onsets import onset_times  # noqa: E402

SR = 16_000


def _log_probs(best: list[int], vocab: int = 6) -> np.ndarray:
    lp = np.full((len(best), vocab), -9.0)
    lp[np.arange(len(best)), best] = -0.01
    return lp


def test_onsets_are_the_starts_of_non_blank_runs():
    assert onset_times(_log_probs([0, 3, 3, 0, 5, 5, 5, 0, 3, 2])) == [0.04, 0.16, 0.32, 0.36]
    assert onset_times(_log_probs([0, 0, 0])) == []


def _dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * SR / x.size)


def _burst(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_identity_map_reproduces_the_audio():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    x = (0.4 * np.sin(2 * np.pi * 140 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    y = wsola(x, np.arange(0, x.size, 256))
    assert y.size == x.size
    assert np.corrcoef(x[1000:-1000], y[1000:-1000])[0, 1] > 0.99


def test_held_vowel_is_shortened_and_keeps_its_pitch():
    """A 'consonant' burst, a vowel held 2.4 s at 150 Hz, another burst: with onsets at the
    three sounds, the vowel keeps 60 ms at each end plus the drawn fraction of the rest."""
    rng = np.random.default_rng(1)
    t = np.arange(int(2.4 * SR)) / SR
    vowel = sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in (1, 2, 3)).astype(np.float32)
    x = np.concatenate([_burst(0.1, rng), vowel, _burst(0.1, rng)])
    onsets = np.array([0.0, 0.1, 2.5])
    y = squeeze_held(x, np.random.default_rng(2), onsets, fraction=(0.25, 0.25), keep_s=0.06)
    held = 2.4 - 2 * 0.06
    expected = x.size / SR - held * (1 - 0.25)
    assert abs(y.size / SR - expected) < 0.04
    middle = y[int(0.3 * SR) : int(0.3 * SR) + 4096]
    assert abs(_dominant_hz(middle) - 150) < 6
    # the bursts at both ends are still there
    assert np.sqrt(np.mean(y[: int(0.05 * SR)] ** 2)) > 0.15
    assert np.sqrt(np.mean(y[-int(0.05 * SR) :] ** 2)) > 0.15


def test_nothing_to_squeeze_leaves_the_audio_alone():
    rng = np.random.default_rng(3)
    x = _burst(1.0, rng)
    assert squeeze_held(x, rng, np.array([0.2]), (0.1, 0.5)) is x
    # phonemes every 100 ms: nothing is held
    assert squeeze_held(x, rng, np.arange(0, 1.0, 0.1), (0.1, 0.5)) is x


def test_speech_preset_needs_onsets_and_is_deterministic():
    rng_x = np.random.default_rng(4)
    t = np.arange(3 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 130 * t) + 0.01 * rng_x.standard_normal(t.size)).astype(np.float32)
    onsets = np.array([0.0, 1.5, 2.9])
    a = augment_audio(x, np.random.default_rng(5), SPEECH, onsets)
    b = augment_audio(x, np.random.default_rng(5), SPEECH, onsets)
    assert np.array_equal(a, b)
    lengths = {augment_audio(x, np.random.default_rng(s), SPEECH, onsets).size for s in range(12)}
    assert min(lengths) < 0.8 * x.size  # some recordings were spoken faster
