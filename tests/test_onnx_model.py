"""The bundled ONNX acoustic model: loading, output shapes, long-audio windowing, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from iqrah.acoustic import Vocabulary
from iqrah.acoustic.onnx_model import OnnxAcousticModel, bundled_model_path

SR = 16_000
ASSET = bundled_model_path()
pytestmark = pytest.mark.skipif(not ASSET.is_file(), reason=f"model asset not built yet: {ASSET} (see docs/model.md)")


def expected_frames(n_samples: int) -> int:
    """40 ms frames for the bundled model's architecture (its card says which)."""
    card = json.loads(ASSET.with_suffix(".json").read_text(encoding="utf-8"))
    if card["architecture"]["type"] == "whisper-ctc":  # centred 10 ms frames, conv stride 2, two stacked
        return max(1, ((max(400, n_samples) // 160 + 1) // 2) // 2)
    feats = 1 + max(0, n_samples - 400) // 160
    return max(1, ((feats - 3) // 2 + 1 - 3) // 2 + 1)


@pytest.fixture(scope="module")
def model() -> OnnxAcousticModel:
    return OnnxAcousticModel(threads=1)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def test_card_and_vocabulary(model):
    card = json.loads(ASSET.with_suffix(".json").read_text(encoding="utf-8"))
    assert card["vocabulary"] == list(Vocabulary().tokens)
    assert model.vocab.tokens == Vocabulary().tokens
    assert model.frame_seconds == pytest.approx(0.04)
    assert card["architecture"]["parameters"] > 0
    # analyze's content gate for this model (set on the train split): without it every ayah whose
    # free decoding is above the 8 % default would skip the tajweed checks
    assert 0.08 < card["gate_per"] < 1
    # every bundled model together (iqrah-small and the live model beside it) within 40 MB
    assert sum(f.stat().st_size for f in ASSET.parent.glob("*.onnx")) <= 40 * 1024 * 1024


def test_log_probs_shape_and_normalisation(model):
    audio = noise(3.0)
    lp = model.log_probs(audio)
    assert lp.dtype == np.float32
    assert lp.shape == (expected_frames(audio.size), len(Vocabulary()))
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-3)
    assert model.frames_for(3.0) == 75


def test_very_short_audio(model):
    for n in (0, 1, 800, 1359):
        lp = model.log_probs(np.full(n, 0.01, np.float32))
        assert lp.shape == (expected_frames(n), len(Vocabulary())) and expected_frames(n) <= 2


def test_long_audio_is_windowed_and_merged(model):
    audio = noise(47.3, seed=3)
    lp = model.log_probs(audio)
    assert lp.shape == (expected_frames(audio.size), len(Vocabulary()))
    assert np.isfinite(lp).all()
    # the frames before the first cut (the middle of the first overlap) come from the first window unchanged
    window, overlap = model._window, model._overlap
    assert window < audio.size
    first = model.log_probs(audio[:window])
    before_cut = int((window - overlap / 2) / SR / 0.04) - 2
    np.testing.assert_allclose(lp[:before_cut], first[:before_cut], atol=1e-4)


def test_no_torch_needed():
    code = ("import sys, numpy as np\n"
            "from iqrah.acoustic.onnx_model import OnnxAcousticModel\n"
            "OnnxAcousticModel(threads=1).log_probs(np.zeros(16000, np.float32))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bundled_model_has_no_integer_convolutions():
    """onnxruntime has no fast ConvInteger kernel: the shipped model keeps convolutions float."""
    onnx = pytest.importorskip("onnx", reason="reading the graph needs onnx")
    ops = {node.op_type for node in onnx.load(str(ASSET)).graph.node}
    assert "ConvInteger" not in ops
    assert "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops  # the MatMuls stay INT8


def test_float_convs_rewrites_a_quantized_model(tmp_path):
    """train/iqrah_train/float_convs.py: INT8 convolutions become float ones over the dequantized
    weights; the output stays what the INT8 model computes, within activation rounding."""
    torch = pytest.importorskip("torch", reason="building the test model needs torch")
    onnx = pytest.importorskip("onnx", reason="exporting needs onnx")
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sys.path.insert(0, str(ASSET.parents[4] / "train"))
    from iqrah_train.float_convs import float_convs

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(8, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv1d(16, 16, 5, padding=2, groups=16), torch.nn.Flatten(),
                              torch.nn.Linear(16 * 40, 4)).eval()
    x = torch.randn(2, 8, 40)
    fp32, int8, out = tmp_path / "fp32.onnx", tmp_path / "int8.onnx", tmp_path / "float_convs.onnx"
    torch.onnx.export(net, (x,), str(fp32), input_names=["x"], output_names=["y"], dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    model = onnx.load(str(int8))
    assert float_convs(model) == 2
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    ops = [n.op_type for n in model.graph.node]
    assert "ConvInteger" not in ops and ops.count("Conv") == 2

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]

    want, quantized, got = net(x).detach().numpy(), run(int8), run(out)
    scale = np.abs(want).max()
    assert np.abs(got - quantized).max() < 0.05 * scale  # what the INT8 model says
    assert np.abs(got - want).max() < 0.25 * scale
    # the float weights are the INT8 ones dequantized: each within half a step of the original
    floats = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_float")]
    for weight, conv in zip(sorted(floats, key=np.size), sorted((net[0], net[2]), key=lambda c: c.weight.numel())):
        original = conv.weight.detach().numpy()
        step = np.abs(original).max() / 127
        assert np.abs(weight - original).max() <= 0.5 * step + 1e-6


def test_float_matmuls_over_int8_weights(tmp_path):
    """float_convs(matmuls=REGEX, int8_weights=True): the chosen MatMul computes in float over its
    INT8 weights, which stay INT8 in the file behind a DequantizeLinear; folded at load (the
    session option the loader sets for a card with ``fold_dequantize``) it equals the same MatMul
    over weights dequantized in the file, while the other MatMul stays INT8."""
    torch = pytest.importorskip("torch", reason="building the test model needs torch")
    onnx = pytest.importorskip("onnx", reason="exporting needs onnx")
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sys.path.insert(0, str(ASSET.parents[4] / "train"))
    from iqrah_train.float_convs import float_convs

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 8)).eval()
    x = torch.randn(1, 50, 64)
    x[..., 3] *= 40  # one loud channel, as Whisper's activations have: 8 bits over its range lose the rest
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    torch.onnx.export(net, (x,), str(fp32), input_names=["x"], output_names=["y"], dynamo=False)
    quantize_dynamic(str(fp32), str(int8), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    names = [n.name for n in onnx.load(str(int8)).graph.node if n.op_type == "MatMulInteger"]
    assert len(names) == 2
    first = names[0].split("/")[1]

    variants = {}
    for stored in (False, True):
        model = onnx.load(str(int8))
        assert float_convs(model, matmuls=f"^/{first}/", int8_weights=stored) == 1
        onnx.checker.check_model(model)
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("MatMulInteger") == 1 and ops.count("DequantizeLinear") == int(stored)
        variants[stored] = tmp_path / f"stored{int(stored)}.onnx"
        onnx.save(model, str(variants[stored]))
    assert variants[True].stat().st_size < variants[False].stat().st_size - 64 * 256 * 2

    def run(path, fold=False):
        opts = ort.SessionOptions()
        if fold:
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]

    want, quantized = net(x).detach().numpy(), run(int8)
    in_file, folded = run(variants[False]), run(variants[True], fold=True)
    np.testing.assert_allclose(folded, in_file, atol=1e-5)
    assert np.abs(folded - want).mean() < 0.2 * np.abs(quantized - want).mean()


def test_the_loader_folds_dequantize_for_a_card_that_asks():
    """A card with ``fold_dequantize`` (the bundled iqrah-small's float attention MatMuls over INT8
    weights) gets the folding session; without it onnxruntime fuses the DequantizeLinear into an
    INT8 kernel and the output moves."""
    import onnxruntime as ort

    card = json.loads(ASSET.with_suffix(".json").read_text(encoding="utf-8"))
    if not card.get("fold_dequantize"):
        pytest.skip("the bundled model has no weights to fold")
    model = OnnxAcousticModel(threads=1)
    features = model._features(noise(4.0))[None]

    def session(fold):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        if fold:
            opts.add_session_config_entry("session.disable_quant_qdq", "1")
        return ort.InferenceSession(str(ASSET), opts, providers=["CPUExecutionProvider"])

    got = model._infer(features)
    folded, fused = (session(f).run(None, {"features": features})[0] for f in (True, False))
    np.testing.assert_array_equal(got, folded)
    assert np.abs(fused - folded).max() > 1e-3
