"""The training recipe's speech-length augmentation (train/iqrah_train): phoneme onsets from a
model's output, and held sounds shortened between them without changing the pitch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT

pytest.importorskip("scipy", reason="the training augmentation needs scipy (the [train] extra)")
sys.path.insert(0, str(ROOT / "train"))
from iqrah_train.augment import SPEECH, augment_audio, squeeze_held, wsola  # noqa: E402
from iqrah_train.onsets import onset_times  # noqa: E402

SR = 16_000


def _log_probs(best: list[int], vocab: int = 6) -> np.ndarray:
    lp = np.full((len(best), vocab), -9.0)
    lp[np.arange(len(best)), best] = -0.01
    return lp


def test_onsets_are_the_starts_of_non_blank_runs():
    assert onset_times(_log_probs([0, 3, 3, 0, 5, 5, 5, 0, 3, 2])) == [0.04, 0.16, 0.32, 0.36]
    assert onset_times(_log_probs([0, 0, 0])) == []


def _dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * SR / x.size)


def _burst(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_identity_map_reproduces_the_audio():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    x = (0.4 * np.sin(2 * np.pi * 140 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    y = wsola(x, np.arange(0, x.size, 256))
    assert y.size == x.size
    assert np.corrcoef(x[1000:-1000], y[1000:-1000])[0, 1] > 0.99


def test_held_vowel_is_shortened_and_keeps_its_pitch():
    """A 'consonant' burst, a vowel held 2.4 s at 150 Hz, another burst: with onsets at the
    three sounds, the vowel keeps 60 ms at each end plus the drawn fraction of the rest."""
    rng = np.random.default_rng(1)
    t = np.arange(int(2.4 * SR)) / SR
    vowel = sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in (1, 2, 3)).astype(np.float32)
    x = np.concatenate([_burst(0.1, rng), vowel, _burst(0.1, rng)])
    onsets = np.array([0.0, 0.1, 2.5])
    y = squeeze_held(x, np.random.default_rng(2), onsets, fraction=(0.25, 0.25), keep_s=0.06)
    held = 2.4 - 2 * 0.06
    expected = x.size / SR - held * (1 - 0.25)
    assert abs(y.size / SR - expected) < 0.04
    middle = y[int(0.3 * SR) : int(0.3 * SR) + 4096]
    assert abs(_dominant_hz(middle) - 150) < 6
    # the bursts at both ends are still there
    assert np.sqrt(np.mean(y[: int(0.05 * SR)] ** 2)) > 0.15
    assert np.sqrt(np.mean(y[-int(0.05 * SR) :] ** 2)) > 0.15


def test_nothing_to_squeeze_leaves_the_audio_alone():
    rng = np.random.default_rng(3)
    x = _burst(1.0, rng)
    assert squeeze_held(x, rng, np.array([0.2]), (0.1, 0.5)) is x
    # phonemes every 100 ms: nothing is held
    assert squeeze_held(x, rng, np.arange(0, 1.0, 0.1), (0.1, 0.5)) is x


def test_speech_preset_needs_onsets_and_is_deterministic():
    rng_x = np.random.default_rng(4)
    t = np.arange(3 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 130 * t) + 0.01 * rng_x.standard_normal(t.size)).astype(np.float32)
    onsets = np.array([0.0, 1.5, 2.9])
    a = augment_audio(x, np.random.default_rng(5), SPEECH, onsets)
    b = augment_audio(x, np.random.default_rng(5), SPEECH, onsets)
    assert np.array_equal(a, b)
    lengths = {augment_audio(x, np.random.default_rng(s), SPEECH, onsets).size for s in range(12)}
    assert min(lengths) < 0.8 * x.size  # some recordings were spoken faster


def test_train_data_hands_each_recording_its_onsets(tmp_path):
    """``TrainData`` reads ``onsets.json`` beside the cache and gives the squeeze each file's own
    onsets; a file the onsets pass did not reach is left unsqueezed."""
    pytest.importorskip("torch", reason="the training data loader needs torch (the [train] extra)")
    import json

    from iqrah.acoustic import Vocabulary
    from iqrah_train.data import TrainData

    rng = np.random.default_rng(6)
    t = np.arange(3 * SR) / SR
    clip = (0.3 * np.sin(2 * np.pi * 130 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    pcm = (clip * 32767).astype(np.int16)
    (tmp_path / "audio.int16").write_bytes(np.concatenate([pcm, pcm]).tobytes())
    index = {"a.opus": [0, pcm.size], "b.opus": [pcm.size, pcm.size]}
    targets = {f: {"phonemes": "مَاالِك", "reciter": "r", "basmala": False, "duration_s": 3.0} for f in index}
    (tmp_path / "index.json").write_text(json.dumps(index), encoding="utf-8")
    (tmp_path / "targets.json").write_text(json.dumps(targets, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "onsets.json").write_text(json.dumps({"a.opus": [0.0, 1.5, 2.9]}), encoding="utf-8")

    data = TrainData(tmp_path, Vocabulary())
    by_file = {u.file: u for u in data.utts}
    assert by_file["a.opus"].onsets.tolist() == [0.0, 1.5, 2.9]
    assert by_file["b.opus"].onsets is None
    squeezed = [i for i, u in enumerate(data.utts) if u.onsets is not None]
    x, lens, y, ylens = data.make_batch(squeezed * 8, np.random.default_rng(7), SPEECH)
    assert int(lens.min()) < 0.8 * 300  # some of the 3 s (300 feature frames) copies were spoken faster
    assert ylens.tolist() == [len("مَالِك")] * 8  # the targets, runs collapsed, do not change


def test_codec_round_trip_keeps_the_voice_and_loses_detail():
    """The phones and handsets presets' lossy codec pass: the same sound comes back (pitch, length
    within the encoder's delay), but not bit for bit, and the same Generator draws the same codec;
    AMR-NB (a phone call) loses everything above 4 kHz."""
    from iqrah_train.augment import CODECS, codec_roundtrip

    t = np.arange(2 * SR) / SR
    x = sum(0.2 / k * np.sin(2 * np.pi * 180 * k * t) for k in (1, 2, 3, 4)).astype(np.float32)
    x += (0.05 * np.sin(2 * np.pi * 5000 * t)).astype(np.float32)
    for name in CODECS:
        for seed in range(2):
            y = codec_roundtrip(x, np.random.default_rng(seed), (name,))
            assert abs(y.size - x.size) < 0.15 * SR, name  # AAC: 112 ms of priming and padding
            assert abs(_dominant_hz(y[SR // 2 : SR // 2 + 8192]) - 180) < 6, name
            assert not np.array_equal(y[: x.size], x)
            assert np.array_equal(y, codec_roundtrip(x, np.random.default_rng(seed), (name,)))
            spectrum = np.abs(np.fft.rfft(y[SR // 2 : SR // 2 + 8192]))
            if name == "amr":  # 8 kHz sampling: the 5 kHz tone is gone
                assert spectrum[int(4500 * 8192 / SR):].max() < 0.01 * spectrum.max()


def test_average_means_the_weights_and_counts_every_step_once(tmp_path):
    """``iqrah train average``: float weights are the mean, integer buffers the last's; the last
    checkpoint becomes the latest stage and the average has no training of its own, so the card's
    total (state + stages, as export.py sums it) counts each run once."""
    torch = pytest.importorskip("torch", reason="averaging checkpoints needs torch (the [train] extra)")
    from iqrah_train.average import average

    def checkpoint(name, weight, step, stages):
        path = tmp_path / f"{name}.pt"
        torch.save({"config": {"d": 4}, "model": {"w": torch.full((2,), weight), "n": torch.tensor(step)},
                    "state": {"step": step, "epoch": 3, "elapsed": 60.0 * step, "audio_seconds": 36.0 * step},
                    "data": {}, "args": {"name": name}, "stages": stages}, path)
        return path

    base = [{"ckpt": "runs/first/last.pt", "steps": 100, "minutes": 100.0}]
    a = checkpoint("a", 1.0, 10, base)
    b = checkpoint("b", 3.0, 20, base + [{"ckpt": str(a), "steps": 10, "minutes": 10.0}])
    out = average([a, b])
    assert out["model"]["w"].tolist() == [2.0, 2.0]
    assert int(out["model"]["n"]) == 20
    assert [st["ckpt"] for st in out["stages"]] == ["runs/first/last.pt", str(a), str(b)]
    assert out["state"]["step"] + sum(st["steps"] for st in out["stages"]) == 100 + 10 + 20
