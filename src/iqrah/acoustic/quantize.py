"""``iqrah model quantize``: smaller, faster variants of an exported ONNX model.

* ``dynamic``: INT8 weights for MatMul and Gemm only, activations quantized on the fly
  (quantizing the convolutions too made CPU inference slower in our trials);
* ``static``: INT8 weights and activations, ranges calibrated on real recordings (features of up
  to 100 train-split files), QDQ format;
* ``fp16``: half-precision weights for GPUs (inputs and outputs stay float32).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def quantize_dynamic_int8(src: str | Path, dst: str | Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
    return Path(dst)


class FeatureReader:
    """Calibration inputs for static quantization: model features of real recordings."""

    def __init__(self, features: list[dict[str, np.ndarray]]):
        self._items = iter(features)

    def get_next(self):
        return next(self._items, None)


def quantize_static_int8(src: str | Path, dst: str | Path, calibration: list[dict[str, np.ndarray]]) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("static quantization needs calibration recordings")
    quantize_static(str(src), str(dst), FeatureReader(calibration), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Gemm"], activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return Path(dst)


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save_model(model, str(dst))
    return Path(dst)


def copy_card(src: str | Path, dst: str | Path, variant: str) -> None:
    """Give the quantized file the card (and vocabularies) of its source."""
    src, dst = Path(src), Path(dst)
    for card in (src.with_suffix(".json"), src.parent / "muaalem.json"):
        if card.is_file():
            import json

            data = json.loads(card.read_text(encoding="utf-8"))
            data["variant"] = variant
            dst.with_suffix(".json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
            break
    if dst.parent != src.parent:
        for name in ("vocab.json", "preprocessor_config.json"):
            if (src.parent / name).is_file():
                shutil.copy(src.parent / name, dst.parent / name)
