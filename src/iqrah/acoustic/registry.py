"""Choosing an acoustic model by name: the bundled one by default, never a download."""

from __future__ import annotations

from pathlib import Path

from .base import AcousticModel

DEFAULT_MODEL = "iqrah-small"


class ModelError(ValueError):
    """A model name or file that cannot be loaded; the message lists what can."""


def load_model(name: str | None = None) -> AcousticModel:
    """``iqrah-small`` (bundled, the default) or a path to an ``.onnx`` file with its ``.json`` card."""
    from .onnx_model import OnnxAcousticModel

    name = name or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        return OnnxAcousticModel()
    path = Path(name)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ModelError(f"no model file at {str(path)!r}")
        return OnnxAcousticModel(path)
    raise ModelError(f"unknown model {name!r}: use {DEFAULT_MODEL!r} (bundled) or a path to an .onnx file")
