"""The muaalem backend: ``obadx/muaalem-model-v3_2`` (Wav2Vec2-BERT, phonemes + 10 sifat heads).

Two ways to run it, one interface:

* ``MuaalemTorchModel`` loads a checkpoint with the model class of the ``quran-muaalem`` package
  (extra ``[muaalem]``: torch, transformers) from a local folder or the Hugging Face cache.
  Nothing is ever downloaded: the hub cache is read with ``local_files_only``.
* ``MuaalemOnnxModel`` runs an export of it (``iqrah model export``) with onnxruntime, no torch.

Both compute SeamlessM4T features (80 log-mel bins stacked in pairs: 160 values every 20 ms)
with transformers' numpy feature extractor, map the model's phoneme vocabulary onto iqrah's
(blank = the model's ``[PAD]``), and expose the sifat heads as log-probabilities per level.
Audio over ``window_s`` goes in overlapping windows (attention memory grows with the square of
the length), each output frame taken from the window where it is furthest from an edge.
"""

from __future__ import annotations

import json
import os
from abc import abstractmethod
from pathlib import Path

import numpy as np

from .base import AcousticModel
from .vocab import BLANK, Vocabulary

PAD = "[PAD]"
PREFIX = "muaalem:"
DEFAULT_REPO = "obadx/muaalem-model-v3_2"
FEATURE_HOP_S = 0.01 * 2  # SeamlessM4T: 10 ms fbank frames stacked by 2


def resolve(name_or_path: str) -> Path:
    """A local checkpoint folder, or the Hugging Face cache's copy of a hub id (never a download)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"no folder {name_or_path!r} and huggingface_hub is not installed") from None
    try:
        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception as exc:  # not in the cache: say how to get it, do not fetch it
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a folder nor in the Hugging Face cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}); download it once with "
            f"`huggingface-cli download {name_or_path}` on a machine with network access") from exc


def level_vocabularies(folder: Path) -> dict[str, dict[str, int]]:
    """{level: {token: id}} from the checkpoint's vocab.json (phonemes and the ten sifat)."""
    return json.loads((folder / "vocab.json").read_text(encoding="utf-8"))


def phoneme_columns(model_vocab: dict[str, int], vocab: Vocabulary) -> np.ndarray:
    """For each iqrah token, the model's output column (-1 where the model lacks the token)."""
    columns = []
    for token in vocab.tokens:
        key = PAD if token == BLANK else token
        columns.append(model_vocab.get(key, -1))
    columns = np.array(columns)
    if columns[0] < 0:
        raise ValueError("the model's vocabulary has no [PAD] (CTC blank) token")
    return columns


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class _MuaalemBase(AcousticModel):
    levels: list[str]

    @property
    def has_sifat(self) -> bool:
        return True

    def _setup(self, folder: Path, frame_seconds: float, window_s: float, overlap_s: float):
        from transformers import SeamlessM4TFeatureExtractor

        self.folder = folder
        self.extractor = SeamlessM4TFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        self.level_vocab = level_vocabularies(folder)
        self.vocab = Vocabulary()
        self.columns = phoneme_columns(self.level_vocab["phonemes"], self.vocab)
        self.frame_seconds = frame_seconds
        self.window = int(window_s * 16000)
        self.overlap = int(overlap_s * 16000)

    def features(self, audio_16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.extractor(np.asarray(audio_16k, dtype=np.float32), sampling_rate=16000, return_tensors="np")
        return out["input_features"].astype(np.float32), out["attention_mask"].astype(np.int64)

    @abstractmethod
    def _levels(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits per level, (T, V_level), for one window."""

    def all_log_probs(self, audio_16k: np.ndarray) -> dict[str, np.ndarray]:
        """Log-probabilities of every head: ``phonemes`` (model order) and each sifa level."""
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        if audio.size <= self.window:
            return {k: log_softmax(v) for k, v in self._levels(audio).items()}
        step = self.window - self.overlap
        starts = list(range(0, audio.size - self.window, step)) + [audio.size - self.window]
        pieces: dict[str, list[np.ndarray]] = {}
        kept_until = 0  # next output frame to fill
        for k, start in enumerate(starts):
            out = {name: log_softmax(v) for name, v in self._levels(audio[start:start + self.window]).items()}
            first = int(round(start / 16000 / self.frame_seconds))
            n = next(iter(out.values())).shape[0]
            last_needed = n if k == len(starts) - 1 else int(
                round((starts[k + 1] + self.overlap / 2) / 16000 / self.frame_seconds)) - first
            lo = max(0, kept_until - first)
            hi = max(lo, min(n, last_needed))
            for name, lp in out.items():
                pieces.setdefault(name, []).append(lp[lo:hi])
            kept_until = first + hi
        return {name: np.concatenate(parts) for name, parts in pieces.items()}

    def log_probs(self, audio_16k: np.ndarray) -> np.ndarray:
        return self.log_probs_and_sifat(audio_16k)[0]

    def sifat_log_probs(self, audio_16k: np.ndarray) -> dict[str, np.ndarray]:
        """The ten sifat heads: {level: (T, V_level)}; token i >= 1 of a level is the i-th label of
        that sifa in ``quran_transcript.SifaOutput`` order, 0 the blank."""
        return self.log_probs_and_sifat(audio_16k)[1]

    def log_probs_and_sifat(self, audio_16k: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Phoneme log-probs in iqrah's vocabulary and the sifat heads, from one forward pass."""
        levels = self.all_log_probs(audio_16k)
        phonemes = levels.pop("phonemes")
        out = np.full((phonemes.shape[0], len(self.vocab)), -1e4, dtype=np.float32)
        present = self.columns >= 0
        out[:, present] = phonemes[:, self.columns[present]]
        return out, levels


def frame_seconds_of(config) -> float:
    adapter = getattr(config, "adapter_stride", 1) ** getattr(config, "num_adapter_layers", 0)
    return FEATURE_HOP_S * (adapter if getattr(config, "add_adapter", False) else 1)


class MuaalemTorchModel(_MuaalemBase):
    """The checkpoint run by torch (extra ``[muaalem]``)."""

    def __init__(self, name_or_path: str = DEFAULT_REPO, *, window_s: float = 20.0, overlap_s: float = 2.0,
                 threads: int | None = None):
        import torch
        from quran_muaalem.modeling.modeling_multi_level_ctc import Wav2Vec2BertForMultilevelCTC

        folder = resolve(name_or_path)
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = Wav2Vec2BertForMultilevelCTC.from_pretrained(str(folder), local_files_only=True).eval()
        self.levels = list(self.model.config.level_to_vocab_size)
        self.card = {"name": f"muaalem:{name_or_path}", "backend": "torch"}
        self._setup(folder, frame_seconds_of(self.model.config), window_s, overlap_s)

    def _levels(self, audio):
        feats, mask = self.features(audio)
        with self.torch.inference_mode():
            out = self.forward(self.torch.from_numpy(feats), self.torch.from_numpy(mask))
        return {name: t[0].float().numpy() for name, t in zip(self.levels, out)}

    def forward(self, input_features, attention_mask):
        """Logits of every level in ``self.levels`` order: the graph ``iqrah model export`` writes."""
        logits = self.model(input_features, attention_mask=attention_mask).logits
        return tuple(logits[level] for level in self.levels)


class MuaalemOnnxModel(_MuaalemBase):
    """An export of the checkpoint (``iqrah model export``) run by onnxruntime, no torch."""

    def __init__(self, onnx_path: str | Path, *, window_s: float = 20.0, overlap_s: float = 2.0,
                 threads: int = 0):
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        card_path = onnx_path.with_suffix(".json")
        if not card_path.is_file():
            card_path = onnx_path.parent / "muaalem.json"
        self.card = json.loads(card_path.read_text(encoding="utf-8"))
        self.levels = self.card["levels"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers + ["CPUExecutionProvider"])
        self._setup(onnx_path.parent, float(self.card["frame_seconds"]), window_s, overlap_s)

    def _levels(self, audio):
        feats, mask = self.features(audio)
        outputs = self.session.run(None, {"input_features": feats, "attention_mask": mask})
        return {name: out[0].astype(np.float32) for name, out in zip(self.levels, outputs)}
