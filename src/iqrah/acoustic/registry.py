"""Choosing an acoustic model by name: the bundled one by default, never a download."""

from __future__ import annotations

from pathlib import Path

from .base import AcousticModel

DEFAULT_MODEL = "iqrah-small"
#: the bundled model for live verdicts: cheaper per call than DEFAULT_MODEL, which a stream's
#: final report uses (a stream runs the model on a short window several times a second)
LIVE_MODEL = "iqrah-live"


class ModelError(ValueError):
    """A model name or file that cannot be loaded; the message lists what can."""


def load_model(name: str | None = None, *, threads: int = 0) -> AcousticModel:
    """``iqrah-small`` (bundled, the default); ``iqrah-live`` (bundled, faster, for live
    verdicts); ``muaalem:<folder or hub id>`` (torch, extra [muaalem]); or a path to an ``.onnx``
    file with its ``.json`` card (iqrah or muaalem export). ``threads``: onnxruntime threads per
    model call (0: one per core); a server that runs several calls at once gives each one thread."""
    from .onnx_model import OnnxAcousticModel, bundled_model_path

    name = name or DEFAULT_MODEL
    if name in (DEFAULT_MODEL, LIVE_MODEL):
        return OnnxAcousticModel(bundled_model_path(name), threads=threads)
    if name.startswith("muaalem:"):
        try:
            from .muaalem import MuaalemTorchModel
        except ImportError as exc:
            raise ModelError(f"the muaalem backend needs the [muaalem] extra ({exc.name} is missing)") from None
        try:
            return MuaalemTorchModel(name.removeprefix("muaalem:") or "obadx/muaalem-model-v3_2")
        except FileNotFoundError as exc:
            raise ModelError(str(exc)) from None
    path = Path(name)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ModelError(f"no model file at {str(path)!r}")
        if (path.parent / "muaalem.json").is_file() or _card(path).get("levels"):
            from .muaalem import MuaalemOnnxModel

            return MuaalemOnnxModel(path, threads=threads)
        return OnnxAcousticModel(path, threads=threads)
    raise ModelError(f"unknown model {name!r}: use {DEFAULT_MODEL!r} or {LIVE_MODEL!r} (bundled), "
                     "muaalem:<folder or hub id>, or a path to an .onnx file")


def live_model_name(model: str | None) -> str | None:
    """The model a stream's live verdicts use when none is named: the bundled live model beside
    the bundled default (if this package has it), else the stream's model itself (None)."""
    from .onnx_model import bundled_model_path

    if (model or DEFAULT_MODEL) == DEFAULT_MODEL and bundled_model_path(LIVE_MODEL).is_file():
        return LIVE_MODEL
    return None


def _card(path: Path) -> dict:
    import json

    card = path.with_suffix(".json")
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}
