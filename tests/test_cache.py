"""The reference cache: SQLite (embedded) and Redis (a real redis-server, single node and a
3-node cluster), packed values, versioned keys, and text references read back equal."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from iqrah.cache import Cache, RedisCache, SQLiteCache, cache_key, open_cache, pack, unpack


def _free_port() -> int:
    """A free port under 55000: a cluster node also listens on its port + 10000."""
    import random

    while True:
        port = random.randint(20000, 54999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue


def _redis_server(folder, port, *extra) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    return subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder), *extra], stdout=subprocess.DEVNULL)


def _wait(check, seconds=10.0):
    deadline = time.time() + seconds
    while True:
        try:
            return check()
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = _free_port()
    proc = _redis_server(tmp_path_factory.mktemp("redis"), port)
    url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: RedisCache(url).client.ping())
    yield url
    proc.terminate()
    proc.wait(5)


VALUE = {"words": [[0, 0.12, 0.5], [1, 0.5, 1.25]], "pitch": [110.5, None, 112.0], "tempo": 7.8,
         "audio": "husary/001002.mp3", "arabic": "ٱلْحَمْدُ"}


def test_values_pack_small_and_come_back_equal():
    data = pack(VALUE)
    assert unpack(data) == VALUE
    assert len(data) < len(repr(VALUE).encode())


def _round_trip(cache: Cache):
    key = cache_key("0.5.0", "husary", 1, 2)
    assert key == "0.5.0:husary:1:2"
    seen = []
    cache.on_get = lambda hit, seconds: seen.append((hit, seconds))
    assert cache.get(key) is None
    cache.put(key, VALUE)
    assert cache.get(key) == VALUE
    assert cache.get(cache_key("0.6.0", "husary", 1, 2)) is None  # a new model version never reads old entries
    built = []
    assert cache.get_or_build(cache_key("0.5.0", "husary", 1, 3), lambda: built.append(1) or {"x": 1}) == {"x": 1}
    assert cache.get_or_build(cache_key("0.5.0", "husary", 1, 3), lambda: built.append(1) or {"x": 2}) == {"x": 1}
    assert built == [1]
    assert (cache.hits, cache.misses) == (2, 3)
    assert [hit for hit, _ in seen] == [False, True, False, False, True]
    assert all(0 <= s < 1 for _, s in seen)


def test_sqlite_cache_keeps_values_across_instances(tmp_path):
    _round_trip(SQLiteCache(tmp_path / "c.sqlite3"))
    again = SQLiteCache(tmp_path / "c.sqlite3")  # another process opening the same file
    assert again.get("0.5.0:husary:1:2") == VALUE


def test_sqlite_default_file_is_under_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("IQRAH_CACHE", raising=False)
    cache = open_cache()
    assert isinstance(cache, SQLiteCache) and cache.path == tmp_path / "iqrah" / "cache.sqlite3"
    assert type(open_cache("none")) is Cache and open_cache("none").get("k") is None
    with pytest.raises(ValueError, match="unknown cache address"):
        open_cache("memcached://x")


def test_redis_cache_with_a_real_server_and_a_30_day_ttl(redis_url):
    cache = open_cache(redis_url)
    assert isinstance(cache, RedisCache)
    _round_trip(cache)
    ttl = cache.client.ttl("iqrah:cache:0.5.0:husary:1:2")
    assert 29 * 24 * 3600 < ttl <= 30 * 24 * 3600


def test_redis_cluster_of_three_nodes(tmp_path):
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (it creates the cluster)")
    ports = [_free_port() for _ in range(3)]
    procs = []
    try:
        for port in ports:
            folder = tmp_path / str(port)
            folder.mkdir()
            procs.append(_redis_server(folder, port, "--cluster-enabled", "yes", "--cluster-config-file",
                                       str(folder / "nodes.conf")))
        for port in ports:
            _wait(lambda p=port: subprocess.run(["redis-cli", "-p", str(p), "ping"], check=True,
                                                capture_output=True))
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=30)
        cache = _wait(lambda: _cluster_ready(f"redis-cluster://127.0.0.1:{ports[0]}"), 20)
        assert cache.kind == "redis-cluster"
        _round_trip(cache)
        for surah in range(1, 30):  # keys spread over the three nodes' slots
            cache.put(cache_key("0.5.0", "husary", surah, 1), {"s": surah})
        assert all(cache.get(cache_key("0.5.0", "husary", s, 1)) == {"s": s} for s in range(1, 30))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)


def _cluster_ready(url: str) -> RedisCache:
    cache = open_cache(url)
    cache.client.set("probe", b"1")
    return cache


def test_text_references_read_back_from_the_cache_equal(tmp_path):
    from iqrah.quran import build_reference
    from iqrah.quran.reference import use_reference_cache

    cache = SQLiteCache(tmp_path / "refs.sqlite3")
    try:
        use_reference_cache(cache)
        built = [build_reference(s, include_basmala=b) for s, b in (("2:1", True), ("2:255:3-5", False),
                                                                   ("112:1-4", False))]
        assert cache.misses == 3 and cache.hits == 0
        use_reference_cache(cache)  # a new process: nothing in its memory
        again = [build_reference(s, include_basmala=b) for s, b in (("2:1", True), ("2:255:3-5", False),
                                                                   ("112:1-4", False))]
        assert cache.hits == 3
        assert again == built and [r.to_dict() for r in again] == [r.to_dict() for r in built]
        assert again[0].includes_basmala and again[1].words[0].number == 3
        assert [u.rules for u in again[2].units] == [u.rules for u in built[2].units]
    finally:
        use_reference_cache(None)
