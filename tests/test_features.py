"""Log-mel features: shapes, the mel scale, normalisation, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from iqrah.acoustic.features import DEFAULT_FEATURES, FeatureSettings, log_mel, mel_filterbank

SR = 16_000


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_shape_dtype_and_frame_count():
    for n in (400, 401, 559, 560, 16_000, 16_000 * 3 + 77):
        f = log_mel(np.zeros(n, np.float32) + 0.01 * np.random.default_rng(0).standard_normal(n).astype(np.float32))
        assert f.dtype == np.float32
        assert f.shape == (DEFAULT_FEATURES.frames(n), 80)
        assert f.shape[0] == 1 + (n - 400) // 160
    assert log_mel(np.ones(1_000, np.float32)).shape == (4, 80)


def test_short_audio_is_padded_to_one_frame():
    assert log_mel(np.full(100, 0.1, np.float32)).shape == (1, 80)
    assert log_mel(np.zeros(0, np.float32)).shape == (1, 80)


def test_filterbank():
    fb = mel_filterbank(DEFAULT_FEATURES)
    assert fb.shape == (257, 80) and fb.dtype == np.float32
    assert (fb >= 0).all() and fb.max() <= 1.0
    assert (fb.sum(axis=0) > 0).all(), "every mel filter covers at least one FFT bin"
    centres = fb.argmax(axis=0)
    assert (np.diff(centres) >= 0).all(), "filters are in increasing frequency order"


@pytest.mark.parametrize("hz", [250.0, 1_000.0, 3_000.0])
def test_tone_peaks_in_the_right_mel_band(hz):
    raw = FeatureSettings(normalise="none")
    f = log_mel(tone(hz), raw)
    band = int(f.mean(axis=0).argmax())
    fb = mel_filterbank(raw)
    bin_hz = SR / 2 / (fb.shape[0] - 1)
    centre_hz = fb[:, band].argmax() * bin_hz
    assert abs(centre_hz - hz) < max(60.0, 0.08 * hz)


def test_utterance_normalisation_and_gain_invariance():
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32) + tone(440, 2)
    f = log_mel(audio)
    np.testing.assert_allclose(f.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(f.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(log_mel(audio * 0.25), f, atol=2e-3)


def test_deterministic_and_unknown_normalisation():
    audio = tone(700, 0.5)
    np.testing.assert_array_equal(log_mel(audio), log_mel(audio.copy()))
    with pytest.raises(ValueError):
        log_mel(audio, FeatureSettings(normalise="global"))


def test_fast():
    audio = np.random.default_rng(2).standard_normal(SR * 20).astype(np.float32) * 0.1
    log_mel(audio)
    t = time.perf_counter()
    log_mel(audio)
    assert time.perf_counter() - t < 0.5, "20 s of audio must take well under half a second"
