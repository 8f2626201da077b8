"""Any recording a learner may send (wav, flac, mp3, ogg/opus, browser webm, phone m4a) -> 16 kHz mono.

libsndfile (``soundfile``) is tried first because it is fast and exact for wav/flac/ogg; every
other container goes through PyAV, which bundles FFmpeg, so nothing depends on system codecs.
Whatever goes wrong, the caller gets one exception type, ``AudioError``, with a message a user
can act on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
SILENCE_PEAK = 10 ** (-60 / 20)  # a recording whose loudest sample is below -60 dBFS is silent


class AudioError(ValueError):
    """The input cannot be used as a recitation; the message says why and what to do."""


class NoSpeechError(AudioError):
    """The input holds no speech (silence, or sound too faint): nothing to assess."""


class AudioLimitError(AudioError):
    """The input is over a size or length limit (a server answers 413 or ``too_long``)."""


@dataclass(frozen=True)
class AudioLimits:
    max_seconds: float = 600.0
    max_bytes: int = 200 * 1024 * 1024


def decode_audio(source: str | Path | bytes | bytearray | memoryview, *,
                 limits: AudioLimits = AudioLimits(), sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file path or in-memory bytes to mono float32 at ``sample_rate`` Hz (peak <= 1).

    Raises AudioError for missing, empty, corrupt, unsupported, silent or over-long input.
    """
    data, name = _read_source(source, limits)
    audio, rate = _decode_soundfile(data, limits)
    if audio is None:
        audio, rate = _decode_av(data, name, limits)
    if audio.size == 0:
        raise AudioError(f"{name} contains no audio samples")
    audio = resample(audio, rate, sample_rate)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name} decodes to invalid (NaN or infinite) samples")
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise NoSpeechError(f"{name} is silent: nothing louder than -60 dBFS; check the microphone")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _read_source(source, limits: AudioLimits) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the audio"
    else:
        path = Path(source)
        name = f"'{path.name}'"
        if not path.is_file():
            raise AudioError(f"no audio file at {str(path)!r}")
        if path.stat().st_size > limits.max_bytes:
            raise AudioLimitError(f"{name} is {path.stat().st_size / 2**20:.0f} MB; the limit is "
                             f"{limits.max_bytes / 2**20:.0f} MB")
        data = path.read_bytes()
    if not data:
        raise AudioError(f"{name} is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise AudioLimitError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is "
                         f"{limits.max_bytes / 2**20:.0f} MB")
    return data, name


def _too_long(name: str, limits: AudioLimits) -> AudioError:
    minutes = limits.max_seconds / 60
    return AudioLimitError(f"{name} is longer than the {minutes:g} min limit; send a shorter recording")


def _decode_soundfile(data: bytes, limits: AudioLimits) -> tuple[np.ndarray | None, int]:
    """Decode with libsndfile, or return (None, 0) if it does not know the format."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames > limits.max_seconds * f.samplerate:
                raise _too_long("the recording", limits)
            audio = f.read(dtype="float32", always_2d=True)
            return audio.mean(axis=1), f.samplerate
    except AudioError:
        raise
    except Exception:  # not a format libsndfile reads (mp3 in old builds, m4a, webm...)
        return None, 0


def _decode_av(data: bytes, name: str, limits: AudioLimits) -> tuple[np.ndarray, int]:
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioError(f"{name} is not a recording in a format we can read "
                         "(wav, flac, mp3, ogg/opus, webm, m4a/aac)") from exc
    with container:
        if not container.streams.audio:
            raise AudioError(f"{name} has no audio track")
        stream = container.streams.audio[0]
        # FFmpeg decoders emit many sample formats; have PyAV hand us planar float at source rate.
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate, total = 0, 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    rate = rate or out.sample_rate
                    chunk = out.to_ndarray().mean(axis=0)
                    total += chunk.size
                    if total > limits.max_seconds * rate:
                        raise _too_long(name, limits)
                    chunks.append(chunk)
        except AudioError:
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            if not chunks:
                raise AudioError(f"{name} is corrupt: no audio could be decoded") from exc
            # a truncated upload: keep what decoded, as players do
    if not chunks:
        raise AudioError(f"{name} contains no audio samples")
    return np.concatenate(chunks).astype(np.float32, copy=False), rate


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 ``audio`` from ``rate`` to ``target`` Hz (soxr, high quality)."""
    if rate <= 0:
        raise AudioError(f"sample rate must be positive, got {rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if rate == target:
        return audio
    return soxr.resample(audio, rate, target, quality="HQ").astype(np.float32, copy=False)
