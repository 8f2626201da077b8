import numpy as np
import pytest

from iqrah.audio import SAMPLE_RATE, SileroVad, VadConfig, VadStream, speech_segments
from iqrah.audio.vad import CHUNK


def test_probability_is_high_on_speech_and_low_on_silence(speech):
    vad = SileroVad()
    on_speech = [vad(speech[i:i + CHUNK]) for i in range(16000, 48000, CHUNK)]
    vad.reset()
    on_silence = [vad(np.zeros(CHUNK, np.float32)) for _ in range(30)]
    assert np.mean(on_speech) > 0.7
    assert max(on_silence) < 0.2


def test_finds_speech_between_silences(speech):
    gap = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate((gap, speech, gap, speech[:SAMPLE_RATE * 2], gap))
    segments = speech_segments(audio)
    assert len(segments) == 2
    first, second = segments
    assert abs(first.start_s - 2.0) < 0.15
    assert first.end_s <= 2.0 + speech.size / SAMPLE_RATE + 0.1
    assert abs(second.start_s - (4.0 + speech.size / SAMPLE_RATE)) < 0.15
    assert all(s.end > s.start for s in segments)


def test_streaming_in_any_chunk_size_matches_the_whole_file(speech):
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate((gap, speech, gap, speech, gap))
    whole = speech_segments(audio)
    rng = np.random.default_rng(0)
    stream = VadStream()
    found, pos = [], 0
    while pos < audio.size:
        n = int(rng.integers(1, 5000))
        found += stream.feed(audio[pos:pos + n])
        pos += n
    found += stream.flush()
    assert found == whole


def test_flush_closes_speech_that_runs_to_the_end(speech):
    stream = VadStream()
    assert stream.feed(speech[:SAMPLE_RATE * 2]) == []
    assert stream.speaking
    [segment] = stream.flush()
    assert segment.end <= SAMPLE_RATE * 2


def test_short_bursts_are_not_speech(speech):
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    burst = speech[SAMPLE_RATE: SAMPLE_RATE + 1600]  # 100 ms, under min_speech_ms=250
    assert speech_segments(np.concatenate((gap, burst, gap))) == []


@pytest.mark.parametrize("threshold", [0.3, 0.8])
def test_threshold_is_configurable(speech, threshold):
    assert speech_segments(speech, VadConfig(threshold=threshold))
