"""The bundled small phoneme CTC model, run with onnxruntime (no torch).

The ONNX graph takes log-mel features, not audio: input ``features`` float32
``(batch, frames, 80)`` computed by :func:`iqrah.acoustic.features.log_mel` (settings in the
model card), output ``log_probs`` float32 ``(batch, T, 43)`` log-softmax, one frame per 40 ms
(frame ``j`` starts at sample ``640 * j``). The card ``iqrah-small.json`` beside the model
lists the vocabulary, the feature settings and the architecture (which sets how many output
frames a number of feature frames gives); the vocabulary is checked when loading.

A CTC model may hear a sound a little after it happens (where its spike falls is learnt). The
card's ``delay_seconds`` (measured on the train split, see docs/model.md) is taken off: the model
hears the audio from that point on, so that frame ``j`` still stands for time ``0.04 j`` s; the
output keeps the frame count of the whole audio (the last frame repeated).

Audio longer than ``window_seconds`` (the card's, else 20 s, the longest utterance seen in
training) is cut into windows that overlap by ``overlap_seconds`` (the card's, else 2 s);
features are normalised per window, as in training, and each output frame is taken from the window in which it lies furthest from an edge (the cut
is in the middle of each overlap). A stream runs the windows of its final report as the audio
arrives (``settled_windows``, ``WindowMemo``); the final report then takes them instead of running
them again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .base import AcousticModel
from .features import FeatureSettings, log_mel
from .vocab import Vocabulary

MODEL_NAME = "iqrah-small"
SAMPLES_PER_FRAME = 640  # 40 ms at 16 kHz: four 10 ms feature frames per output frame


def bundled_model_path(name: str = MODEL_NAME) -> Path:
    """Where a packaged ONNX file is (it may not exist in a checkout without the asset)."""
    return Path(str(resources.files("iqrah.acoustic") / "assets" / f"{name}.onnx"))


def _conformer_frames(n_feature_frames: int) -> int:
    """Two 3x3 stride-2 convolutions without padding."""
    t1 = (n_feature_frames - 3) // 2 + 1
    return max(0, (t1 - 3) // 2 + 1)


def _whisper_ctc_frames(n_feature_frames: int) -> int:
    """Whisper's stride-2 convolution (padded), then two 20 ms frames stacked into one."""
    return ((n_feature_frames + 1) // 2) // 2


#: output frames for a number of feature frames, and the fewest feature frames that give one
OUTPUT_FRAMES = {"conformer-ctc": (_conformer_frames, 7), "whisper-ctc": (_whisper_ctc_frames, 3)}


class WindowMemo:
    """Outputs of windows already run, found again by their samples (a digest of them): a window
    is reused only for exactly the same audio, so nothing depends on guessing where a report will
    cut the recording."""

    def __init__(self):
        self._outputs: dict[bytes, np.ndarray] = {}

    @staticmethod
    def _key(window: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(window, dtype=np.float32).tobytes(), digest_size=16).digest()

    def get(self, window: np.ndarray) -> np.ndarray | None:
        return self._outputs.get(self._key(window))

    def put(self, window: np.ndarray, output: np.ndarray) -> None:
        self._outputs[self._key(window)] = output


class OnnxAcousticModel(AcousticModel):
    """Frame-wise phoneme log-probabilities from an exported iqrah acoustic model."""

    def __init__(self, model_path: str | Path | None = None, card_path: str | Path | None = None, *,
                 threads: int = 0, window_seconds: float | None = None, overlap_seconds: float | None = None):
        path = Path(model_path) if model_path is not None else bundled_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"acoustic model not found: {path}")
        card_file = Path(card_path) if card_path is not None else path.with_suffix(".json")
        if not card_file.is_file():  # e.g. an INT8 variant beside the bundled card
            card_file = path.parent / f"{MODEL_NAME}.json"
        card = json.loads(card_file.read_text(encoding="utf-8")) if card_file.is_file() else {}
        self._configure(card, card_file.name, window_seconds, overlap_seconds)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if card.get("fold_dequantize"):
            # weights stored INT8 for float MatMuls: fold their DequantizeLinear into float weights
            # once, at load (by default onnxruntime keeps it, to fuse into an INT8 kernel)
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.vocab):
            raise ValueError(f"{path.name} outputs {n_out} classes, the vocabulary has {len(self.vocab)}")

    def _configure(self, card: dict, card_name: str, window_seconds: float | None = None,
                   overlap_seconds: float | None = None) -> None:
        """Everything but the network, from the model card: vocabulary, features, frame count,
        delay and windows (so that another network can be heard the same way, e.g. a training
        checkpoint in ``iqrah_train.evaluate``)."""
        self.card = card
        self.vocab = Vocabulary(tuple(self.card["vocabulary"])) if "vocabulary" in self.card else Vocabulary()
        if self.vocab.tokens != Vocabulary().tokens:
            raise ValueError(f"{card_name}: the model's vocabulary differs from iqrah's phoneme set")
        self.features = FeatureSettings(**self.card["features"]) if "features" in self.card else FeatureSettings()
        self.frame_seconds = float(self.card.get("frame_seconds", 0.04))
        arch = self.card.get("architecture", {}).get("type", "conformer-ctc")
        if arch not in OUTPUT_FRAMES:
            raise ValueError(f"{card_name}: unknown architecture {arch!r}")
        self._out_frames, self._min_feature_frames = OUTPUT_FRAMES[arch]
        self._delay = int(round(float(self.card.get("delay_seconds", 0.0)) * self.features.sample_rate))
        self._exact: bool | None = None  # see batches_exactly
        self._reuse = threading.local()  # the WindowMemo of the call running on each thread (reusing)
        hop = SAMPLES_PER_FRAME
        if window_seconds is None:
            window_seconds = float(self.card.get("window_seconds", 20.0))
        if overlap_seconds is None:
            overlap_seconds = float(self.card.get("overlap_seconds", 2.0))
        self._window = int(window_seconds * self.features.sample_rate) // hop * hop
        self._overlap = int(overlap_seconds * self.features.sample_rate) // hop * hop
        if not 0 <= self._overlap < self._window:
            raise ValueError("overlap_seconds must be smaller than window_seconds")

    def _infer(self, features: np.ndarray) -> np.ndarray:
        """The network: features (batch, frames, n_mels) -> log-probs (batch, T, vocab)."""
        return self.session.run(None, {self._input: features})[0]

    def _frames(self, n_samples: int) -> int:
        return max(1, self._out_frames(self.features.frames(n_samples)))

    def _cut(self, n_samples: int) -> int:
        """How many samples the model does not hear: the first ``delay_seconds`` (none of a very
        short input)."""
        return self._delay if n_samples > self._delay + self.features.win else 0

    def _keep_count(self, lp: np.ndarray, n_samples: int) -> np.ndarray:
        """The output for ``n_samples`` of audio: as many frames as without the cut."""
        wanted = self._frames(n_samples)
        if lp.shape[0] >= wanted:
            return lp[:wanted]
        return np.concatenate([lp, np.repeat(lp[-1:], wanted - lp.shape[0], axis=0)])

    def _features(self, audio: np.ndarray) -> np.ndarray:
        feats = log_mel(audio[self._cut(audio.size) :], self.features)
        if feats.shape[0] < self._min_feature_frames:  # a few tens of ms: pad to one output frame
            feats = np.pad(feats, ((0, self._min_feature_frames - feats.shape[0]), (0, 0)))
        return feats

    def _run(self, audio: np.ndarray) -> np.ndarray:
        lp = self._infer(self._features(audio)[None])[0]
        return self._keep_count(lp, audio.size)

    @contextmanager
    def reusing(self, memo: WindowMemo):
        """Within the block, on this thread, windows found in ``memo`` are not run again (the
        model is shared by threads: another thread's calls are not affected)."""
        self._reuse.memo = memo
        try:
            yield
        finally:
            self._reuse.memo = None

    def settled_windows(self, n_samples: int) -> list[tuple[int, int]]:
        """(start, end) in samples of the windows that ``log_probs`` runs on any audio that begins
        like the first ``n_samples`` and is longer than them: all but the last, which ends where
        the audio ends."""
        step = self._window - self._overlap
        return [(s, s + self._window) for s in range(0, n_samples - self._window + 1, step)]

    def run_window(self, window: np.ndarray, memo: WindowMemo) -> None:
        """Run one window (from ``settled_windows``) now, for ``memo``."""
        memo.put(window, self._run(np.asarray(window, dtype=np.float32)))

    def _window_output(self, window: np.ndarray) -> np.ndarray:
        memo = getattr(self._reuse, "memo", None)
        found = memo.get(window) if memo is not None else None
        return found if found is not None else self._run(window)

    def batch_key(self, audio_16k: np.ndarray):
        """Audio of one window or less batches with audio of the same number of feature frames
        (no padding: the graph has no mask, and padding would change what it outputs), if the
        graph computes a batch exactly as its items one by one."""
        n = np.asarray(audio_16k).size
        heard = n - self._cut(n)
        return self.features.frames(heard) if n <= self._window and self.batches_exactly() else None

    def batches_exactly(self) -> bool:
        """Dynamic INT8 quantization (the bundled model's MatMuls) scales activations by the
        largest value in the whole batch: batched, one session's output would depend on the
        audio of the others (up to 0.7 in a log-prob). Checked once, on two different inputs."""
        if self._exact is None:
            feats = np.random.default_rng(0).standard_normal((2, 60, self.features.n_mels)).astype(np.float32)
            feats[1] *= 4
            both = self._infer(feats)
            self._exact = all(np.abs(self._infer(f[None])[0] - b).max() < 1e-4
                              for f, b in zip(feats, both))
        return self._exact

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        keys = {self.batch_key(a) for a in audios}
        if len(audios) == 1 or len(keys) != 1 or None in keys:
            return [self.log_probs(a) for a in audios]
        feats = np.stack([self._features(np.asarray(a, dtype=np.float32).reshape(-1)) for a in audios])
        out = self._infer(feats)
        return [np.ascontiguousarray(self._keep_count(lp, np.asarray(a).size), dtype=np.float32)
                for lp, a in zip(out, audios)]

    def log_probs(self, audio_16k: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        if audio.size <= self._window:
            return np.ascontiguousarray(self._run(audio), dtype=np.float32)
        hop = SAMPLES_PER_FRAME
        total = self._frames(audio.size)
        # the windows fixed by the audio before its last sample (a stream runs them ahead, see
        # settled_windows), then one that ends at the end
        starts = [s for s, _ in self.settled_windows(audio.size - 1)]
        last = (audio.size - self._window) // hop * hop
        if last > starts[-1]:
            starts.append(last)
        out = np.empty((total, len(self.vocab)), dtype=np.float32)
        for k, s in enumerate(starts):
            lp = self._window_output(audio[s : s + self._window])
            f0 = s // hop
            lo = 0 if k == 0 else (f0 + (starts[k - 1] + self._window) // hop) // 2
            hi = total if k == len(starts) - 1 else (starts[k + 1] // hop + (s + self._window) // hop) // 2
            hi = min(hi, f0 + lp.shape[0], total)
            out[lo:hi] = lp[lo - f0 : hi - f0]
            if k == len(starts) - 1 and hi < total:  # cannot happen with whole windows; be safe
                out[hi:] = lp[-1]
        return out
