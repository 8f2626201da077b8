"""Batching model calls across sessions: calls that wait for a free runner run as one batch,
each caller gets its own result (or the batch's error), and only models that compute a batch
exactly as one by one are batched."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from iqrah.acoustic import Vocabulary
from iqrah.acoustic.base import AcousticModel
from iqrah.acoustic.batching import BatchingModel


class SlowExactModel(AcousticModel):
    """log-probs = a function of the audio alone; each run takes 50 ms, batched or not."""

    vocab = Vocabulary()
    frame_seconds = 0.04

    def __init__(self, fail_on: float | None = None):
        self.batches: list[int] = []
        self.fail_on = fail_on
        self.started = threading.Event()  # a batch is running

    def log_probs(self, audio):
        return self.log_probs_batch([audio])[0]

    def batch_key(self, audio):
        return None if audio.size > 1000 else audio.size

    def log_probs_batch(self, audios):
        self.batches.append(len(audios))
        self.started.set()
        time.sleep(0.05)
        if any(a[0] == self.fail_on for a in audios):
            raise RuntimeError("model failed")
        return [np.full((a.size // 10, len(self.vocab)), float(a[0]), np.float32) for a in audios]


def call_all(model, audios, first_alone=True):
    results, errors = [None] * len(audios), [None] * len(audios)

    def run(i):
        try:
            results[i] = model.log_probs(audios[i])
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(audios))]
    threads[0].start()
    if first_alone:  # the first call holds the only runner; the others wait together
        assert model.model.started.wait(5)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_calls_waiting_for_the_runner_run_as_one_batch_and_each_gets_its_own_result():
    inner = SlowExactModel()
    model = BatchingModel(inner, runners=1, max_batch=4)
    audios = [np.full(500, k, np.float32) for k in range(4)] + [np.full(300, 9, np.float32)]
    results, errors = call_all(model, audios)
    assert errors == [None] * 5
    for audio, result in zip(audios, results):
        assert result.shape == (audio.size // 10, len(Vocabulary())) and np.all(result == audio[0])
    assert inner.batches[0] == 1 and sorted(inner.batches[1:]) == [1, 3]  # 500-sample calls together


def test_calls_are_never_batched_without_a_key_nor_beyond_max_batch():
    inner = SlowExactModel()
    model = BatchingModel(inner, runners=1, max_batch=2)
    results, _ = call_all(model, [np.full(2000, k, np.float32) for k in range(3)]
                          + [np.full(500, k, np.float32) for k in range(5)])
    assert all(r is not None for r in results)
    assert max(inner.batches) == 2 and sum(inner.batches) == 8
    assert inner.batches.count(1) >= 3  # the three long recordings, alone


def test_a_failed_batch_fails_each_of_its_callers_and_no_other():
    inner = SlowExactModel(fail_on=2.0)
    model = BatchingModel(inner, runners=1, max_batch=4)
    audios = [np.full(500, 1, np.float32), np.full(500, 2, np.float32), np.full(500, 3, np.float32),
              np.full(700, 4, np.float32)]
    results, errors = call_all(model, audios)
    assert errors[0] is None and results[0] is not None  # ran alone, before
    assert isinstance(errors[1], RuntimeError) and isinstance(errors[2], RuntimeError)
    assert errors[3] is None and np.all(results[3] == 4)


def test_idle_calls_run_at_once_on_free_runners():
    inner = SlowExactModel()
    model = BatchingModel(inner, runners=4, max_batch=4)
    call_all(model, [np.full(500, k, np.float32) for k in range(4)], first_alone=False)
    assert inner.batches == [1, 1, 1, 1]  # four runners free: nobody waits for company


def test_the_bundled_model_is_not_batched_and_its_float_twin_batches_exactly(tmp_path):
    """Dynamic INT8 quantization scales activations by the whole batch: the bundled model must
    not be batched. Its all-float twin (float_convs --matmuls) gives the same log-probs batched."""
    onnx = pytest.importorskip("onnx", reason="rewriting the model needs onnx")
    import sys

    from iqrah.acoustic.onnx_model import OnnxAcousticModel, bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")
    bundled = OnnxAcousticModel(threads=1)
    assert not bundled.batches_exactly()
    assert bundled.batch_key(np.zeros(32000, np.float32)) is None

    sys.path.insert(0, str(bundled_model_path().parents[4] / "train"))
    from iqrah_train.float_convs import float_convs

    graph = onnx.load(str(bundled_model_path()))
    float_convs(graph, matmuls=".")
    path = tmp_path / "iqrah-small.onnx"
    onnx.save(graph, str(path))
    (tmp_path / "iqrah-small.json").write_text(bundled_model_path().with_suffix(".json").read_text(encoding="utf-8"),
                                               encoding="utf-8")
    twin = OnnxAcousticModel(path, threads=1)
    assert twin.batches_exactly()
    rng = np.random.default_rng(0)
    audios = [(0.1 * rng.standard_normal(32000)).astype(np.float32) for _ in range(3)]
    assert len({twin.batch_key(a) for a in audios}) == 1
    one_by_one = [twin.log_probs(a) for a in audios]
    batched = twin.log_probs_batch(audios)
    for a, b in zip(one_by_one, batched):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_server_batches_only_a_model_that_batches_exactly():
    from iqrah.server.app import ServerConfig, ServerState

    class Exact(SlowExactModel):
        def batches_exactly(self):
            return True

    state = ServerState(ServerConfig(), model=Exact())
    assert isinstance(state.model, BatchingModel) and state.pool._max_workers > ServerConfig().inference_threads
    plain = SlowExactModel()
    state = ServerState(ServerConfig(), model=plain)
    assert state.model is plain and state.pool._max_workers == ServerConfig().inference_threads
