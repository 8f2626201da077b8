"""Training data from the cache that ``prep`` wrote: length-bucketed batches, augmented on the fly.

Batches are fixed lists of utterance indices, a pure function of (seed, epoch): epoch 0 goes in
order of increasing length (curriculum), later epochs sort by length with jitter, cut batches
capped at ``max_batch_seconds`` of padded audio, and shuffle the batch order. Each batch's
augmentation uses a Generator seeded from (seed, epoch, batch number), so a resumed run sees
exactly the batches and augmentations it would have seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iqrah.acoustic import Vocabulary
from iqrah.acoustic.features import DEFAULT_FEATURES, FeatureSettings, log_mel

from .augment import AugmentConfig, augment_audio, spec_augment


def collapse(s: str) -> str:
    """Merge runs of the same symbol: 'اااا' -> 'ا'."""
    return "".join(c for i, c in enumerate(s) if i == 0 or c != s[i - 1])


@dataclass
class Utterance:
    file: str
    offset: int
    length: int
    target: list[int]
    reciter: str
    onsets: np.ndarray | None = None  # where each phoneme begins (s), if ``onsets.py`` ran


class TrainData:
    def __init__(self, data_dir: Path, vocab: Vocabulary, max_seconds: float = 20.0):
        data_dir = Path(data_dir)
        targets = json.loads((data_dir / "targets.json").read_text(encoding="utf-8"))
        index = json.loads((data_dir / "index.json").read_text(encoding="utf-8"))
        self.audio = np.memmap(data_dir / "audio.int16", dtype=np.int16, mode="r")
        onsets_file = data_dir / "onsets.json"
        onsets = json.loads(onsets_file.read_text(encoding="utf-8")) if onsets_file.exists() else {}
        self.utts: list[Utterance] = []
        self.skipped: list[str] = []
        for f in sorted(index):
            off, n = index[f]
            if n > max_seconds * 16000 or n < 16000 * 0.3:
                continue
            try:
                tgt = vocab.encode(collapse(targets[f]["phonemes"]))
            except ValueError:  # a few phonetized partial-ayah texts carry raw letters: skip
                self.skipped.append(f)
                continue
            # CTC needs at least as many 40 ms frames as collapsed target symbols (a little slack)
            if len(tgt) * 0.04 * 1.1 > n / 16000:
                continue
            times = np.asarray(onsets[f]) if f in onsets else None
            self.utts.append(Utterance(f, off, n, tgt, targets[f]["reciter"], times))
        self.lengths = np.array([u.length for u in self.utts])

    def summary(self) -> dict:
        rec = sorted({u.reciter for u in self.utts})
        return {"files": len(self.utts), "hours": round(float(self.lengths.sum()) / 16000 / 3600, 2),
                "reciters": rec,
                "files_per_reciter": {r: sum(u.reciter == r for u in self.utts) for r in rec}}

    def batches(self, epoch: int, seed: int, max_batch_seconds: float) -> list[list[int]]:
        cap = max_batch_seconds * 16000
        if epoch == 0:
            order = np.argsort(self.lengths, kind="stable")
        else:
            rng = np.random.default_rng([seed, epoch, 1])
            jitter = self.lengths * rng.uniform(0.85, 1.15, size=self.lengths.size)
            order = np.argsort(jitter, kind="stable")
        batches, cur, longest = [], [], 0
        for i in order:
            n = max(longest, int(self.lengths[i]))
            if cur and n * (len(cur) + 1) > cap:
                batches.append(cur)
                cur, n = [], int(self.lengths[i])
            cur.append(int(i))
            longest = n
        if cur:
            batches.append(cur)
        if epoch > 0:
            rng = np.random.default_rng([seed, epoch, 2])
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def make_batch(self, idx: list[int], rng: np.random.Generator, aug: AugmentConfig | None,
                   feats: FeatureSettings = DEFAULT_FEATURES, wave: bool = True):
        """Padded features, their lengths, concatenated targets and target lengths. ``aug`` None:
        no augmentation; ``wave`` False: SpecAugment only."""
        xs, ys = [], []
        for i in idx:
            u = self.utts[i]
            audio = self.audio[u.offset : u.offset + u.length].astype(np.float32) / 32768.0
            if aug is not None and wave:
                audio = augment_audio(audio, rng, aug, u.onsets)
            f = log_mel(audio, feats)
            if aug is not None:
                f = spec_augment(f, rng, aug)
            xs.append(f)
            ys.append(u.target)
        lens = torch.tensor([x.shape[0] for x in xs])
        x = torch.zeros(len(xs), int(lens.max()), feats.n_mels)  # (the padding is masked in the models)
        for k, f in enumerate(xs):
            x[k, : f.shape[0]] = torch.from_numpy(f)
        ylens = torch.tensor([len(y) for y in ys])
        y = torch.tensor([t for yy in ys for t in yy], dtype=torch.long)
        return x, lens, y, ylens


class BatchStream(torch.utils.data.Dataset):
    """The batches of one epoch from ``start`` on, built in a worker process."""

    def __init__(self, data: TrainData, batches: list[list[int]], epoch: int, start: int, seed: int,
                 aug: AugmentConfig | None, wave: bool = True, features: FeatureSettings = DEFAULT_FEATURES):
        self.data, self.batches, self.epoch, self.start = data, batches, epoch, start
        self.seed, self.aug, self.wave, self.features = seed, aug, wave, features

    def __len__(self):
        return len(self.batches) - self.start

    def __getitem__(self, k):
        b = self.start + k
        rng = np.random.default_rng([self.seed, self.epoch, b, 3])
        return (b, *self.data.make_batch(self.batches[b], rng, self.aug, self.features, wave=self.wave))


class CachedData(TrainData):
    """Training data for a head on a frozen encoder whose output ``iqrah_train.encode`` cached.

    ``folders`` are caches of the same encoder and layer: a clean one and, optionally, augmented
    copies. With waveform augmentation on, each utterance of a batch is read from a copy drawn at
    random; without, from the first folder. Batches are cut by the clean audio's length, as for
    ``TrainData``. Inputs are the frozen layers' output (20 ms frames), their lengths in frames.
    """

    def __init__(self, data_dir: Path, vocab: Vocabulary, folders: list[Path], layer: int,
                 max_seconds: float = 20.0):
        from .encode import open_hidden, read_index
        super().__init__(data_dir, vocab, max_seconds)
        indexes = [read_index(f) for f in folders]
        # the same encoder, however many of its blocks each cache loaded (a cache of layer 4 only
        # loads 4 of base's 6): the first ``layer`` blocks are the same weights
        encoders = {json.dumps({k: v for k, v in ix["encoder"].items() if k != "layers"}, sort_keys=True)
                    for ix in indexes}
        if len(encoders) != 1 or any(layer not in ix["layers"] for ix in indexes):
            raise SystemExit(f"the caches must hold layer {layer} of one and the same encoder")
        self.encoder = indexes[0]["encoder"]
        self.d = int(self.encoder["d"])
        self.copies = [(ix["files"], open_hidden(f, layer, self.d)) for ix, f in zip(indexes, folders)]
        keep = [k for k, u in enumerate(self.utts) if all(u.file in files for files, _ in self.copies)]
        self.utts = [self.utts[k] for k in keep]
        self.lengths = self.lengths[keep]

    def make_batch(self, idx: list[int], rng: np.random.Generator, aug: AugmentConfig | None,
                   feats: FeatureSettings = DEFAULT_FEATURES, wave: bool = True):
        xs, ys = [], []
        masks = hidden_masks(aug, self.d) if aug is not None else None
        for i in idx:
            u = self.utts[i]
            files, hidden = self.copies[int(rng.integers(len(self.copies))) if aug is not None and wave else 0]
            off, n = files[u.file]
            h = hidden[off : off + n].astype(np.float32)
            xs.append(spec_augment(h, rng, masks) if masks is not None else h)
            ys.append(u.target)
        lens = torch.tensor([x.shape[0] for x in xs])
        x = torch.zeros(len(xs), int(lens.max()), self.d)
        for k, h in enumerate(xs):
            x[k, : h.shape[0]] = torch.from_numpy(h)
        ylens = torch.tensor([len(y) for y in ys])
        y = torch.tensor([t for yy in ys for t in yy], dtype=torch.long)
        return x, lens, y, ylens


def hidden_masks(aug: AugmentConfig, d: int) -> AugmentConfig:
    """SpecAugment's masks for 20 ms encoder frames of ``d`` channels: the same share of the
    channels and the same durations as on 10 ms log-mel frames of 80 bins."""
    from dataclasses import replace
    return replace(aug, freq_width=round(aug.freq_width * d / 80), time_mask_every=aug.time_mask_every // 2,
                   time_width=aug.time_width // 2)
