"""Speed and memory of the muaalem model: quran_muaalem's own torch path vs our ONNX FP32 and INT8.

    .venv/bin/python bench/model_speed.py [--lengths 5 15 30] [--repeat 3] [--threads 2] [--prune] [--json out.json]

The full-size architecture (Wav2Vec2-BERT: 24 layers, d=1024, 16 heads, FFN 4096, adapter to 40 ms
frames, 11 CTC heads; about 600M parameters) is built with random weights: speed does not depend
on the weight values, and the real weights cannot be downloaded here. It is saved, exported
(external data: the model is over 2 GB) and quantized (dynamic INT8 of MatMul/Gemm) in a temp
folder. The three backends then run on the same real recitation cut to each length, interleaved
in one process with the same number of threads; peak memory for a 20 s window is measured in a
fresh process per backend. ``--prune`` adds the 30 % global magnitude pruning experiment.
Needs the [muaalem] extra, about 10 GB of RAM and 8 GB of disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL_SIZE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 conv_depthwise_kernel_size=31, add_adapter=True, adapter_stride=2, num_adapter_layers=1,
                 position_embeddings_type="relative_key", feature_projection_input_dim=160)


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_depthwise_kernel_size=3, add_adapter=True, adapter_stride=2, num_adapter_layers=1,
            output_hidden_size=32)


def build_checkpoint(folder: Path, size: dict = FULL_SIZE) -> Path:
    import torch
    from quran_muaalem.modeling.configuration_multi_level_ctc import Wav2Vec2BertForMultilevelCTCConfig
    from quran_muaalem.modeling.modeling_multi_level_ctc import Wav2Vec2BertForMultilevelCTC
    from quran_muaalem.modeling.vocab import build_quran_phoneme_script_vocab
    from transformers import SeamlessM4TFeatureExtractor

    build_quran_phoneme_script_vocab(str(folder / "vocab.json"))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    config = Wav2Vec2BertForMultilevelCTCConfig(
        level_to_vocab_size={k: len(v) for k, v in vocab.items()},
        level_to_loss_weight={k: 0.4 if k == "phonemes" else 0.05 for k in vocab}, **size)
    torch.manual_seed(0)
    Wav2Vec2BertForMultilevelCTC(config).save_pretrained(folder)
    SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder


def backends(folder: Path, onnx_fp32: Path, onnx_int8: Path, threads: int):
    """name -> callable(audio) running one inference."""
    import torch
    from quran_muaalem import Muaalem
    from quran_transcript import quran_phonetizer

    from iqrah.acoustic.muaalem import MuaalemOnnxModel
    from iqrah.config import RecitationSettings
    from iqrah.quran.text import ayah_text

    torch.set_num_threads(threads)
    reference = quran_phonetizer(ayah_text(1, 2), RecitationSettings().to_moshaf(), remove_spaces=True)
    muaalem = Muaalem(str(folder), device="cpu", dtype=torch.float32)
    fp32 = MuaalemOnnxModel(onnx_fp32, threads=threads)
    int8 = MuaalemOnnxModel(onnx_int8, threads=threads)
    return {
        "quran_muaalem torch fp32": lambda a: muaalem([a], [reference], sampling_rate=16000),
        "iqrah onnx fp32": fp32.all_log_probs,
        "iqrah onnx int8": int8.all_log_probs,
    }


def peak_memory(kind: str, folder: Path, onnx_path: Path, seconds: float, threads: int) -> float:
    """Peak RSS (MB) of a fresh process running one ``seconds`` window."""
    code = f"""
import numpy as np, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / 'src')!r})
audio = (np.random.default_rng(0).standard_normal(int({seconds} * 16000)) * 0.1).astype(np.float32)
if {kind!r} == "torch":
    import torch
    torch.set_num_threads({threads})
    from iqrah.acoustic.muaalem import MuaalemTorchModel
    MuaalemTorchModel({str(folder)!r}, window_s=30).all_log_probs(audio)
else:
    from iqrah.acoustic.muaalem import MuaalemOnnxModel
    MuaalemOnnxModel({str(onnx_path)!r}, threads={threads}, window_s=30).all_log_probs(audio)
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak over fork + exec)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 0)


def prune_experiment(folder: Path, audio: np.ndarray, threads: int) -> dict:
    import torch
    from torch.nn.utils import prune

    from iqrah.acoustic.muaalem import MuaalemTorchModel

    torch.set_num_threads(threads)
    model = MuaalemTorchModel(str(folder))

    def timed():
        model.all_log_probs(audio)
        start = time.perf_counter()
        model.all_log_probs(audio)
        return time.perf_counter() - start

    def nonzero_mb():
        return sum(int((p != 0).sum()) for p in model.model.parameters()) * 4 / 2**20

    before = {"seconds": round(timed(), 3), "nonzero_weights_mb": round(nonzero_mb(), 1)}
    linears = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    # global unstructured L1 pruning, as prune.global_unstructured does it, but with the global
    # threshold found by one in-place partition: global_unstructured's topk over all 600M weights
    # ran this 24 GB machine out of memory
    magnitudes = np.concatenate([m.weight.detach().abs().numpy().ravel() for m in linears])
    k = int(0.3 * magnitudes.size)
    threshold = float(np.partition(magnitudes, k)[k])
    del magnitudes
    for module in linears:
        prune.custom_from_mask(module, "weight", module.weight.detach().abs() >= threshold)
        prune.remove(module, "weight")
    after = {"seconds": round(timed(), 3), "nonzero_weights_mb": round(nonzero_mb(), 1)}
    return {"before": before, "after_30pct_global_magnitude": after, "threshold": threshold,
            "note": "dense kernels do not skip zeros: size shrinks only when stored sparse; speed is unchanged"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[5, 15, 30])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prune", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep the checkpoint and exports here")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script, not the speed")
    parser.add_argument("--json")
    args = parser.parse_args()

    from iqrah.acoustic.export import export_muaalem
    from iqrah.acoustic.quantize import copy_card, quantize_dynamic_int8
    from iqrah.audio import decode_audio

    work = args.workdir or Path(tempfile.mkdtemp(prefix="muaalem-bench-"))
    folder = work / "checkpoint"
    if not (folder / "model.safetensors").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        build_checkpoint(folder, TINY if args.tiny else FULL_SIZE)
    fp32 = work / "onnx" / "muaalem.onnx"
    if not fp32.is_file():
        export_muaalem(str(folder), fp32.parent)
    int8 = fp32.with_name("muaalem-int8.onnx")
    if not int8.is_file():
        quantize_dynamic_int8(fp32, int8)
        copy_card(fp32, int8, "dynamic")

    root = Path(os.environ.get("IQRAH_RECITATIONS", Path(__file__).resolve().parents[2] / "shared" / "recitations"))
    speech = decode_audio(root / "dev" / "offline-tarteel-test-corpus-002255.opus")
    run = backends(folder, fp32, int8, args.threads)
    times: dict[str, dict[float, list[float]]] = {name: {L: [] for L in args.lengths} for name in run}
    for L in args.lengths:
        audio = np.resize(speech, int(L * 16000))
        for fn in run.values():
            fn(audio)  # warm-up
        for _ in range(args.repeat):
            for name, fn in run.items():  # interleaved: load changes hit every backend alike
                start = time.perf_counter()
                fn(audio)
                times[name][L].append(time.perf_counter() - start)
    medians = {name: {L: statistics.median(v) for L, v in per.items()} for name, per in times.items()}
    base = "quran_muaalem torch fp32"
    print(f"{'backend':<28}" + "".join(f"{f'{L:g} s':>12}" for L in args.lengths) + "   speed-up at each length")
    for name, per in medians.items():
        ratios = " ".join(f"{medians[base][L] / per[L]:.2f}x" for L in args.lengths)
        print(f"{name:<28}" + "".join(f"{per[L]:>11.2f}s" for L in args.lengths) + f"   {ratios}")
    memory = {"torch": peak_memory("torch", folder, fp32, 20, args.threads),
              "onnx fp32": peak_memory("onnx", folder, fp32, 20, args.threads),
              "onnx int8": peak_memory("onnx", folder, int8, 20, args.threads)}
    sizes = {"fp32_mb": round(sum(p.stat().st_size for p in fp32.parent.glob("muaalem.onnx*")) / 2**20, 1),
             "int8_mb": round(int8.stat().st_size / 2**20, 1)}
    print("peak memory for a 20 s window (MB):", memory, "sizes:", sizes)
    result = {"threads": args.threads, "seconds": medians, "peak_memory_mb_20s": memory, "sizes": sizes,
              "speedup_vs_quran_muaalem": {name: {L: round(medians[base][L] / per[L], 2) for L in per}
                                           for name, per in medians.items()},
              "max_rss_mb_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.prune:
        result["pruning"] = prune_experiment(folder, np.resize(speech, 15 * 16000), args.threads)
        print("pruning:", result["pruning"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
