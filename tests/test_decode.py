"""Decoding every format a learner may send, on real speech, and refusing bad input clearly."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from audio_files import FORMATS, HAVE_FFMPEG, encode, ffmpeg_convert
from iqrah.audio import SAMPLE_RATE, AudioError, AudioLimits, decode_audio

MAX_CODEC_DELAY = int(0.03 * SAMPLE_RATE)  # AAC priming and Opus pre-skip may shift by < 30 ms


def best_lag_correlation(reference: np.ndarray, decoded: np.ndarray) -> tuple[int, float]:
    seg = reference[8000:40000]
    lags = range(0, MAX_CODEC_DELAY)
    lag = max(lags, key=lambda k: float(np.dot(seg, decoded[8000 + k:40000 + k])))
    return lag, float(np.corrcoef(seg, decoded[8000 + lag:40000 + lag])[0, 1])


@pytest.fixture(scope="module")
def clip(speech) -> np.ndarray:
    return speech[: 3 * SAMPLE_RATE]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_decodes_each_format_at_44k(tmp_path, clip, fmt, channels):
    audio_44k = soxr.resample(clip, SAMPLE_RATE, 44100)
    path = encode(audio_44k, 44100, tmp_path / f"clip{FORMATS[fmt][2]}", fmt, channels)
    decoded = decode_audio(path)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(decoded.size - clip.size) <= 2 * MAX_CODEC_DELAY
    lag, corr = best_lag_correlation(clip, decoded)
    assert corr > 0.97, f"{fmt}: decoded audio does not match the source (r={corr:.3f}, lag={lag})"
    # the same bytes in memory decode the same way
    assert np.array_equal(decode_audio(path.read_bytes()), decoded)


@pytest.mark.skipif(not HAVE_FFMPEG, reason="the ffmpeg command is not installed (.ci/run installs it)")
@pytest.mark.parametrize("suffix,args", [
    (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    (".webm", ["-c:a", "libopus", "-b:a", "32k"]),
    (".m4a", ["-c:a", "aac", "-b:a", "64k"]),
    (".ogg", ["-c:a", "libopus", "-ar", "48000", "-ac", "2"]),
    (".flac", ["-ar", "22050"]),
    (".wav", ["-ar", "8000", "-c:a", "pcm_u8"]),
])
def test_decodes_files_made_by_the_ffmpeg_command(tmp_path, clip, suffix, args):
    source = encode(clip, SAMPLE_RATE, tmp_path / "source.wav", "wav")
    target = ffmpeg_convert(source, tmp_path / f"out{suffix}", args)
    decoded = decode_audio(target)
    assert abs(decoded.size - clip.size) <= 2 * MAX_CODEC_DELAY
    _, corr = best_lag_correlation(clip, decoded)
    assert corr > (0.8 if "8000" in args else 0.97)


def test_decodes_real_recitations(recitations, dev_rows):
    for row in dev_rows[::8]:
        audio = decode_audio(recitations / row["file"])
        assert abs(audio.size / SAMPLE_RATE - float(row["duration_s"])) < 0.1, row["file"]
        assert np.abs(audio).max() <= 1.0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(AudioError, match="no audio file"):
        decode_audio(tmp_path / "nope.wav")


def test_empty_input_is_a_clear_error(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        decode_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match="empty"):
        decode_audio(b"")


def test_corrupt_and_unsupported_input_is_a_clear_error(tmp_path, clip):
    with pytest.raises(AudioError, match="format we can read|corrupt|no audio"):
        decode_audio(b"this is not audio at all, just text " * 100)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20
    with pytest.raises(AudioError):
        decode_audio(png)
    good = encode(clip, SAMPLE_RATE, tmp_path / "clip.mp3", "mp3").read_bytes()
    garbled = good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    try:
        audio = decode_audio(garbled)  # a damaged file may still yield some audio, never a crash
        assert audio.dtype == np.float32
    except AudioError:
        pass


def test_zero_length_wav_is_a_clear_error(tmp_path):
    import soundfile as sf

    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)  # a valid header, no samples
    with pytest.raises(AudioError, match="no audio"):
        decode_audio(path)


def test_silence_is_a_clear_error(tmp_path):
    path = encode(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE, tmp_path / "s.wav", "wav")
    with pytest.raises(AudioError, match="silent"):
        decode_audio(path)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_over_long_input_is_a_clear_error(tmp_path, clip, fmt):
    path = encode(clip, SAMPLE_RATE, tmp_path / f"long{FORMATS[fmt][2]}", fmt)
    with pytest.raises(AudioError, match="longer than the 0.0333333 min limit|longer than"):
        decode_audio(path, limits=AudioLimits(max_seconds=2.0))
    assert decode_audio(path, limits=AudioLimits(max_seconds=4.0)).size > 0


def test_over_large_input_is_refused_before_decoding(tmp_path, clip):
    path = encode(clip, SAMPLE_RATE, tmp_path / "big.wav", "wav")
    with pytest.raises(AudioError, match="MB"):
        decode_audio(path, limits=AudioLimits(max_bytes=1000))
