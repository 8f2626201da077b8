"""Write real audio files in the formats learners send, with FFmpeg's encoders (through PyAV,
or the ffmpeg command when it is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np

# name -> (container format, codec, file suffix)
FORMATS = {
    "wav": ("wav", "pcm_s16le", ".wav"),
    "flac": ("flac", "flac", ".flac"),
    "mp3": ("mp3", "libmp3lame", ".mp3"),
    "ogg_opus": ("ogg", "libopus", ".ogg"),
    "webm_opus": ("webm", "libopus", ".webm"),
    "m4a_aac": ("ipod", "aac", ".m4a"),
}
# rate each codec accepts (opus only runs at 48 kHz and below in fixed steps)
CODEC_RATES = {"libopus": 48000}


def encode(audio: np.ndarray, rate: int, path: Path, fmt: str, channels: int = 1) -> Path:
    """Encode mono float ``audio`` at ``rate`` into ``path`` with FFmpeg's libraries (PyAV)."""
    container_format, codec, _ = FORMATS[fmt]
    out_rate = CODEC_RATES.get(codec, rate)
    layout = "mono" if channels == 1 else "stereo"
    samples = np.tile(audio.astype(np.float32), (channels, 1))
    with av.open(str(path), mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        fmt_name = "s16" if codec == "pcm_s16le" else stream.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(samples if fmt_name.endswith("p") else samples.T.reshape(1, -1).copy(),
                                           format="fltp" if fmt_name.endswith("p") else "flt", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt_name, layout=layout, rate=out_rate,
                                      frame_size=stream.codec_context.frame_size or None)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def ffmpeg_convert(source: Path, target: Path, extra: list[str]) -> Path:
    """Convert with the ffmpeg command line (tests using this skip when it is missing)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *extra, str(target)], check=True)
    return target


HAVE_FFMPEG = shutil.which("ffmpeg") is not None
