"""Batching across sessions: model calls that wait for a free runner are run together.

A server runs many streams; each step of each stream asks the acoustic model for the log-probs of
its newest audio. ``BatchingModel`` lets at most ``runners`` calls compute at once (one per core)
and queues the others; when a runner gets free, a waiting caller takes it and runs its call
together with the other waiting calls of the same ``batch_key`` (at most ``max_batch``), as one
batch. An idle server therefore runs every call at once, alone (no waiting for company), and a busy one,
where streams queue, runs them in batches. Callers block until their result is ready, so the
streaming analyzer stays a plain object calling ``log_probs``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .base import AcousticModel


class _Call:
    __slots__ = ("audio", "key", "taken", "done", "result", "error")

    def __init__(self, audio: np.ndarray, key):
        self.audio, self.key = audio, key
        self.taken = self.done = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class BatchingModel(AcousticModel):
    def __init__(self, model: AcousticModel, runners: int = 2, max_batch: int = 4,
                 on_batch: Callable[[int], None] | None = None):
        self.model = model
        self.vocab, self.frame_seconds, self.card = model.vocab, model.frame_seconds, model.card
        self.runners, self.max_batch = runners, max_batch
        self.on_batch = on_batch  # told the size of every batch run (metrics)
        self._cond = threading.Condition()
        self._waiting: list[_Call] = []
        self._running = 0

    def __getattr__(self, name):  # card, features, ...: the wrapped model's
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def has_sifat(self) -> bool:
        return self.model.has_sifat

    def log_probs_and_sifat(self, audio_16k: np.ndarray):
        """A model with sifat heads runs them unbatched, in one pass with its phonemes."""
        if self.model.has_sifat:
            return self.model.log_probs_and_sifat(audio_16k)
        return self.log_probs(audio_16k), None

    def log_probs(self, audio_16k: np.ndarray) -> np.ndarray:
        call = _Call(audio_16k, self.model.batch_key(audio_16k))
        batch: list[_Call] = []
        with self._cond:
            self._waiting.append(call)
            while not call.taken and self._running >= self.runners:
                self._cond.wait()
            if not call.taken:  # a runner is free: this call, and those waiting that match it
                batch = [call]
                if call.key is not None:
                    batch += [c for c in self._waiting if c is not call and c.key == call.key][: self.max_batch - 1]
                for c in batch:
                    c.taken = True
                    self._waiting.remove(c)
                self._running += 1
            else:  # another caller took it into its batch
                while not call.done:
                    self._cond.wait()
        if batch:
            self._run(batch)
        if call.error is not None:
            raise call.error
        return call.result

    def _run(self, batch: list[_Call]) -> None:
        try:
            results = self.model.log_probs_batch([c.audio for c in batch])
            for c, result in zip(batch, results):
                c.result = result
        except BaseException as exc:  # every caller of the batch hears of it
            for c in batch:
                c.error = exc
        finally:
            with self._cond:
                self._running -= 1
                for c in batch:
                    c.done = True
                self._cond.notify_all()
            if self.on_batch is not None:
                self.on_batch(len(batch))
