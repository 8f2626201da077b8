"""The muaalem backend on a tiny random-weight model of the same class, built here from a config:
load -> analyze -> export -> quantize -> validate, ONNX FP32 equal to torch within 1e-4.
(Needs the [muaalem] extra; the real weights are never downloaded.)"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch", reason="the muaalem backend needs the [muaalem] extra (torch)")
pytest.importorskip("transformers", reason="the muaalem backend needs the [muaalem] extra (transformers)")
pytest.importorskip("quran_muaalem", reason="the muaalem backend needs the [muaalem] extra (quran-muaalem)")
pytest.importorskip("onnx", reason="exporting needs onnx")

from iqrah.cli import app  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 2-layer Wav2Vec2-BERT with the 11 muaalem heads, saved like the real one."""
    from quran_muaalem.modeling.configuration_multi_level_ctc import Wav2Vec2BertForMultilevelCTCConfig
    from quran_muaalem.modeling.modeling_multi_level_ctc import Wav2Vec2BertForMultilevelCTC
    from quran_muaalem.modeling.vocab import build_quran_phoneme_script_vocab
    from transformers import SeamlessM4TFeatureExtractor

    folder = tmp_path_factory.mktemp("tiny-muaalem")
    build_quran_phoneme_script_vocab(str(folder / "vocab.json"))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    config = Wav2Vec2BertForMultilevelCTCConfig(
        level_to_vocab_size={k: len(v) for k, v in vocab.items()},
        # a fresh dict: the package's default one is shared between instances
        level_to_loss_weight={k: 0.4 if k == "phonemes" else 0.05 for k in vocab},
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_depthwise_kernel_size=3, add_adapter=True, adapter_stride=2, num_adapter_layers=1,
        output_hidden_size=32)
    import torch

    torch.manual_seed(0)
    Wav2Vec2BertForMultilevelCTC(config).save_pretrained(folder)
    SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    from iqrah.acoustic.export import export_muaalem

    return export_muaalem(str(checkpoint), tmp_path_factory.mktemp("export"))


def test_loads_from_a_folder_and_maps_the_vocabulary(checkpoint, speech):
    from iqrah.acoustic.registry import load_model

    model = load_model(f"muaalem:{checkpoint}")
    lp = model.log_probs(speech)
    assert lp.shape == (round(speech.size / 16000 / 0.04), 43) or abs(lp.shape[0] - speech.size / 640) <= 2
    assert lp.dtype == np.float32 and model.frame_seconds == pytest.approx(0.04)
    assert np.allclose(np.exp(lp).sum(1), 1, atol=1e-3)
    sifat = model.sifat_log_probs(speech)
    assert len(sifat) == 10 and sifat["ghonna"].shape[0] == lp.shape[0]


def test_missing_checkpoint_is_a_clear_error_without_download(tmp_path, monkeypatch):
    from iqrah.acoustic.registry import ModelError, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="neither a folder nor in the Hugging Face cache"):
        load_model("muaalem:obadx/muaalem-model-v3_2")


def test_analyze_runs_on_the_backend(checkpoint, speech):
    from iqrah.acoustic.registry import load_model
    from iqrah.analyze import analyze

    from iqrah.analyze import AnalyzeSettings

    report = analyze(speech, "1:2", model=load_model(f"muaalem:{checkpoint}"))
    assert len(report.words) == 4  # random weights: the content gate decides, but it runs end to end
    # with the gate open, every aligned unit carries the sifat heads' verdicts
    report = analyze(speech, "1:2", AnalyzeSettings(gate_per=10.0), model=load_model(f"muaalem:{checkpoint}"))
    units = [p for w in report.words for p in w.phonemes]
    assert units and all(p.sifat and set(p.sifat) >= {"ghonna", "qalqla"} for p in units)
    assert units[0].sifat["hams_or_jahr"].expected == "jahr"  # hamza


def test_relative_key_attention_equals_transformers(checkpoint):
    """The export's cheaper relative position scores give what transformers' attention gives,
    over more frames than the 64 + 8 distances it tells apart (clamping included)."""
    import torch

    from iqrah.acoustic.export import _relative_key_attention
    from iqrah.acoustic.muaalem import MuaalemTorchModel

    model = MuaalemTorchModel(str(checkpoint))
    layers = [m for m in model.model.modules()
              if getattr(m, "position_embeddings_type", None) == "relative_key" and hasattr(m, "linear_q")]
    assert layers
    torch.manual_seed(1)
    x = torch.randn(2, 90, layers[0].linear_q.in_features)
    with torch.no_grad():
        want, _ = layers[0](x)
        got, _ = _relative_key_attention(layers[0], x)
    assert torch.allclose(want, got, atol=1e-5)


def test_onnx_equals_torch(checkpoint, exported, speech):
    from iqrah.acoustic.muaalem import MuaalemOnnxModel, MuaalemTorchModel

    torch_model, onnx_model = MuaalemTorchModel(str(checkpoint)), MuaalemOnnxModel(exported)
    a, b = torch_model.all_log_probs(speech), onnx_model.all_log_probs(speech)
    assert set(a) == set(b) and len(a) == 11
    for level in a:
        assert np.abs(a[level] - b[level]).max() < 1e-4, level
    long = np.tile(speech, 5)  # over 20 s: windows
    assert abs(onnx_model.log_probs(long).shape[0] - long.size / 640) <= 3


def test_quantize_and_validate(exported, tmp_path, recitations, manifest):
    runner = CliRunner()
    result = runner.invoke(app, ["model", "quantize", str(exported), "--mode", "dynamic"])
    assert result.exit_code == 0, result.output
    int8 = exported.with_name("muaalem-int8.onnx")
    assert int8.is_file() and int8.stat().st_size < exported.stat().st_size
    result = runner.invoke(app, ["model", "quantize", str(exported), "--mode", "fp16"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["model", "quantize", str(exported), "--mode", "static", "--manifest",
                                 str(recitations / "manifest.csv"), "--calibration-files", "4"])
    assert result.exit_code == 0, result.output
    assert exported.with_name("muaalem-int8-static.onnx").is_file()

    rows = [r for r in manifest if r["split"] == "dev"][:3]
    small = tmp_path / "manifest.csv"
    with open(small, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "file": os.path.relpath(recitations / row["file"], tmp_path)})
    out = tmp_path / "validate.json"
    result = runner.invoke(app, ["model", "validate", str(int8), "--reference", str(exported),
                                 "--manifest", str(small), "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["files"] == 3 and set(data["per"]) == {"reference", "candidate"}
    assert set(data["sifat_error"]["candidate"]) >= {"ghonna", "qalqla"}
    assert 0 <= data["agreement"]["argmax_agreement"] <= 1
    assert result.exit_code == (0 if data["passed"] else 1)
