"""Pitch (YIN): right on tones of known F0, silent on silence and noise, the same frames live as
offline, and carried by the report's and the stream's words."""

from __future__ import annotations

import numpy as np
import pytest

from iqrah.audio.pitch import HOP, PitchTracker, estimate_pitch, pitch_summary

SR = 16_000


def voice(f0_start: float, f0_end: float, seconds: float = 2.0, harmonics=(1.0, 0.6, 0.3)) -> tuple[np.ndarray, np.ndarray]:
    """A harmonic tone gliding from f0_start to f0_end, and its F0 per sample."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = np.linspace(f0_start, f0_end, t.size)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics))
    return (0.2 * x / max(harmonics)).astype(np.float32), f0


@pytest.mark.parametrize("low, high", [(100, 300), (80, 90), (250, 450)])
def test_glides_are_tracked_within_two_percent(low, high):
    audio, f0 = voice(low, high)
    pitch = estimate_pitch(audio)
    truth = np.interp(pitch.times, np.arange(f0.size) / SR, f0)
    voiced = np.isfinite(pitch.f0)
    assert voiced.mean() > 0.95
    assert np.max(np.abs(pitch.f0[voiced] - truth[voiced]) / truth[voiced]) < 0.02


def test_a_strong_second_harmonic_is_not_taken_for_the_pitch():
    audio, _ = voice(220, 220, harmonics=(0.5, 1.0, 0.4))
    assert np.nanmedian(estimate_pitch(audio).f0) == pytest.approx(220, rel=0.01)


def test_silence_and_noise_have_no_pitch():
    rng = np.random.default_rng(0)
    assert not np.isfinite(estimate_pitch(np.zeros(SR, np.float32)).f0).any()
    noise = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    assert np.isfinite(estimate_pitch(noise).f0).mean() < 0.05


def test_the_tracker_gives_the_offline_frames_chunk_by_chunk():
    audio, _ = voice(120, 260, seconds=3.0)
    audio[: SR // 2] = 0
    offline = estimate_pitch(audio)
    tracker, rng, parts, i = PitchTracker(), np.random.default_rng(1), [], 0
    while i < audio.size:
        n = int(rng.integers(1, 4000))
        parts.append(tracker.feed(audio[i:i + n]))
        i += n
    live = parts[0]
    for part in parts[1:]:
        live = live.concat(part)
    assert len(live) == len(offline) == 1 + (audio.size - 512 - 267) // HOP
    np.testing.assert_array_equal(live.times, offline.times)
    np.testing.assert_array_equal(np.nan_to_num(live.f0, nan=-1), np.nan_to_num(offline.f0, nan=-1))


def test_summary_of_a_word():
    audio, _ = voice(150, 150, seconds=1.0)
    audio = np.concatenate([audio, np.zeros(SR // 2, np.float32)])
    summary = pitch_summary(estimate_pitch(audio), 0.5, 1.5)
    assert summary["median_hz"] == pytest.approx(150, rel=0.01)
    assert 0.4 < summary["voiced"] < 0.6  # half voice, half silence
    assert len(summary["contour_hz"]) == 20 and summary["contour_hz"][-1] is None
    assert pitch_summary(estimate_pitch(audio), None, 1.0) is None


def test_report_and_stream_words_carry_the_same_melody(recitations):
    """A real recitation: a plausible F0 for a man's chant, the report's words and the live word
    events give the pitch of the same frames."""
    from iqrah.acoustic.onnx_model import OnnxAcousticModel, bundled_model_path
    from iqrah.analyze import analyze
    from iqrah.audio import decode_audio
    from iqrah.stream import StreamingAnalyzer

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    audio = decode_audio(recitations / "dev" / "offline-tarteel-test-corpus-112001.opus")
    model = OnnxAcousticModel()
    report = analyze(audio, "112:1", model=model)
    medians = [w.pitch.median_hz for w in report.words if w.pitch and w.pitch.median_hz]
    assert len(medians) == len(report.words)
    assert all(90 < m < 350 for m in medians), medians

    analyzer = StreamingAnalyzer("112:1", model=model)
    events = []
    for i in range(0, audio.size, 1600):
        events += analyzer.feed(audio[i:i + 1600])
    events += analyzer.flush()
    words = [e.data for e in events if e.type == "word"]
    assert words
    offline = estimate_pitch(audio)
    for word in words:
        assert word["pitch"] == pitch_summary(offline, word["start"], word["end"])
