"""The one interface every acoustic model implements: audio in, CTC log-probabilities out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .vocab import Vocabulary


class AcousticModel(ABC):
    """Frame-wise phoneme log-probabilities for 16 kHz mono audio.

    Implementations load their weights from the package or a local folder, never from a hub.
    """

    #: the tokens of the output axis; token 0 is the CTC blank
    vocab: Vocabulary
    #: seconds between two output frames (e.g. 0.02 or 0.04)
    frame_seconds: float
    #: the model card: name, version, what it recommends (``gate_per``) and how it was made;
    #: empty for a model without one
    card: dict = {}

    @property
    def name(self) -> str:
        """What a report names as the model that heard it: the card's name (else the class's)."""
        return self.card.get("name", type(self).__name__)

    @property
    def version(self) -> str:
        """The card's version, if it has one (a server names ``name version``)."""
        return str(self.card.get("version", ""))

    @property
    def has_sifat(self) -> bool:
        """Whether the model has sifat heads (``log_probs_and_sifat`` then gives them)."""
        return False

    @abstractmethod
    def log_probs(self, audio_16k: np.ndarray) -> np.ndarray:
        """(T, V) float32 log-softmax over ``vocab`` for each output frame."""

    def log_probs_and_sifat(self, audio_16k: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        """``log_probs`` and, for a model with sifat heads, each head's (T, labels) log-softmax
        from the same pass (else None)."""
        return self.log_probs(audio_16k), None

    def frames_for(self, seconds: float) -> int:
        return int(seconds / self.frame_seconds)

    def batches_exactly(self) -> bool:
        """Whether a batch gives each item exactly what a call of its own gives (a server
        batches the calls of several sessions only then)."""
        return False

    def batch_key(self, audio_16k: np.ndarray):
        """Calls with the same key may run as one batch (``log_probs_batch``); None: never
        batched. A model batches only what it computes exactly as it would one by one."""
        return None

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """``log_probs`` of several recordings of one ``batch_key``."""
        return [self.log_probs(audio) for audio in audios]
