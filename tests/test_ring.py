import threading

import numpy as np
import pytest

from iqrah.audio import RingBuffer


def test_keeps_the_newest_samples_in_order():
    ring = RingBuffer(seconds=1.0, sample_rate=10)
    ring.push(np.arange(4))
    assert ring.latest().tolist() == [0, 1, 2, 3]
    ring.push(np.arange(4, 13))
    assert len(ring) == 10 and ring.total == 13
    assert ring.latest().tolist() == list(range(3, 13))
    assert ring.latest(3).tolist() == [10, 11, 12]
    ring.push(np.arange(100, 125))  # longer than the capacity
    assert ring.latest().tolist() == list(range(115, 125))


def test_since_returns_audio_from_a_stream_position():
    ring = RingBuffer(seconds=1.0, sample_rate=10)
    ring.push(np.arange(15))
    assert ring.since(12).tolist() == [12, 13, 14]
    assert ring.since(15).size == 0
    with pytest.raises(ValueError, match="gone"):
        ring.since(2)


def test_push_never_reallocates():
    ring = RingBuffer(seconds=0.5)
    storage = ring._data
    rng = np.random.default_rng(1)
    for _ in range(200):
        ring.push(rng.standard_normal(rng.integers(1, 3000)).astype(np.float32))
    assert ring._data is storage and ring._data.size == ring.capacity


def test_concurrent_writer_and_readers_see_consistent_data():
    ring = RingBuffer(seconds=1.0, sample_rate=1000)
    errors = []

    def writer():
        for start in range(0, 200_000, 97):
            ring.push(np.arange(start, start + 97, dtype=np.float32))

    def reader():
        for _ in range(2000):
            window = ring.latest(500)
            if window.size > 1 and not np.all(np.diff(window) == 1):
                errors.append(window)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ring.total == len(range(0, 200_000, 97)) * 97
