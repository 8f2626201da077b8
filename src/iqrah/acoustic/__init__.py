"""Acoustic models: audio -> frame-wise phoneme CTC log-probabilities."""

from .base import AcousticModel
from .vocab import BLANK, Vocabulary, phoneme_vocab

__all__ = ["BLANK", "AcousticModel", "Vocabulary", "phoneme_vocab"]
