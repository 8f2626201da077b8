"""Reference reciters: ``iqrah reference build`` measures a reciter's recordings into the cache
(real Husary recordings, the bundled model), resumes, and fills text references."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from iqrah.cache import SQLiteCache
from iqrah.cli import app
from iqrah.reciters import EVERYAYAH, UnknownReciterError, catalogue, find_recordings, model_version, reciter_entry, slug

HUSARY = "Mahmoud Khalil Al-Husary"
FILES = {"offline-tarteel-test-corpus-v3-ea-husary-010063.opus": (10, 63),
         "offline-tarteel-test-corpus-v3-ea-husary-014020.opus": (14, 20)}


@pytest.fixture(scope="module")
def model_ok():
    from iqrah.acoustic.onnx_model import bundled_model_path

    if not bundled_model_path().is_file():
        pytest.skip("the bundled acoustic model is not in this checkout")


def test_everyayah_names_and_slugs():
    assert EVERYAYAH.search("001002").groups() == ("001", "002")
    assert EVERYAYAH.search("offline-ea-husary-026122").groups() == ("026", "122")
    assert EVERYAYAH.search("1234567") is None and EVERYAYAH.search("track01") is None
    assert slug("Mahmoud Khalil Al-Husary") == "mahmoud-khalil-al-husary"


def test_reference_build_measures_a_reciter_and_resumes(model_ok, recitations, tmp_path):
    folder = tmp_path / "husary"
    folder.mkdir()
    for name, (surah, ayah) in FILES.items():
        (folder / f"{surah:03d}{ayah:03d}.opus").symlink_to(recitations / "train" / name)
    (folder / "notes.txt").write_text("not audio")
    assert [(r.surah, r.ayah) for r in find_recordings(folder)] == [(10, 63), (14, 20)]
    url = f"sqlite:///{tmp_path / 'cache.sqlite3'}"
    runner = CliRunner()
    result = runner.invoke(app, ["reference", "build", "--reciter", HUSARY, "--audio-dir", str(folder),
                                 "--cache", url, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "2 built, 0 already" in result.output
    cache = SQLiteCache(tmp_path / "cache.sqlite3")
    entry = reciter_entry(cache, HUSARY, 10, 63, model_version())
    assert entry["spec"] == "10:63" and entry["reciter"] == HUSARY and entry["model"].startswith("iqrah-small")
    assert [w[0] for w in entry["words"]] == [0, 1, 2, 3]
    assert all(a[2] <= b[1] + 1e-6 for a, b in zip(entry["words"], entry["words"][1:]))  # in order
    assert 3 < entry["tempo"] < 15  # phonemes per second of speech
    assert 0.1 < entry["harakah_s"] < 0.4
    *natural, (_, aared) = entry["madd_harakat"]  # natural madds, then the 'aared of the stop (2-6)
    assert natural and all(1 < h < 4 for _, h in natural) and 1 < aared < 8
    f0 = [x for x in entry["pitch"]["f0"] if x is not None]
    assert len(f0) > 100 and 70 < sorted(f0)[len(f0) // 2] < 250  # a man's voice
    assert entry["audio"].endswith("010063.opus")
    again = runner.invoke(app, ["reference", "build", "--reciter", HUSARY, "--audio-dir", str(folder),
                                "--cache", url, "--jobs", "1"])
    assert again.exit_code == 0 and "0 built, 2 already" in again.output
    assert catalogue(cache, model_version()) == {slug(HUSARY): {"name": HUSARY, "ayahs": [[10, 63], [14, 20]]}}
    assert catalogue(cache, "another-model") == {}  # a new model lists none of the old one's entries


def test_reference_build_reports_bad_input(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["reference", "build"])
    assert result.exit_code == 2 and "--reciter" in result.output
    result = runner.invoke(app, ["reference", "build", "--reciter", "x", "--audio-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "is not a folder" in result.output
    result = runner.invoke(app, ["reference", "build", "--reciter", "x", "--audio-dir", str(tmp_path),
                                 "--cache", f"sqlite:///{tmp_path / 'c.sqlite3'}"])
    assert result.exit_code == 2 and "no single-ayah recordings" in result.output
    result = runner.invoke(app, ["reference", "build", "--all", "--cache", "memcached://x"])
    assert result.exit_code == 2 and "unknown cache address" in result.output


def test_text_references_of_every_ayah_go_to_the_cache(tmp_path, monkeypatch):
    import iqrah.quran.text as text
    from iqrah.reciters import build_text_references

    monkeypatch.setattr(text, "SURAH_COUNT", 1)  # surah 1 here (7 ayahs); --all does all 114
    cache = SQLiteCache(tmp_path / "c.sqlite3")
    assert build_text_references(cache) == 7 and cache.misses == 7
    assert build_text_references(cache) == 7 and cache.hits == 7


def test_engine_compares_with_a_built_reciter(model_ok, recitations, tmp_path):
    import iqrah
    from iqrah.reciters import Recording, build_reciter

    path = recitations / "train" / "offline-tarteel-test-corpus-v3-ea-husary-010063.opus"
    cache = SQLiteCache(tmp_path / "c.sqlite3")
    build_reciter(HUSARY, [Recording(path, 10, 63)], cache, jobs=1)
    engine = iqrah.Engine(threads=1, cache=cache)
    report = engine.analyze(path, "10:63", reciter=HUSARY)
    assert report.prosody.reciter == HUSARY and report.prosody.scores.tempo > 95
    with pytest.raises(UnknownReciterError, match="no recording of 10:64 by"):
        engine.analyze(path, "10:64", reciter=HUSARY)
    assert engine.analyze(path, "10:63-64", reciter=HUSARY).prosody is None  # as on the server
    assert engine.stream("10:63", reciter=HUSARY).reciter[0] == HUSARY


def test_server_streams_and_uploads_compare_with_a_reference_reciter(model_ok, recitations, tmp_path):
    """start.reciter and the upload's reciter field: word events and the report carry prosody;
    a reciter the server has not measured is refused with unknown_reciter."""
    import json

    from fastapi.testclient import TestClient

    from iqrah.audio import decode_audio
    from iqrah.reciters import Recording, build_reciter
    from iqrah.server.app import create_app
    from iqrah.server.config import ServerConfig

    path = recitations / "train" / "offline-tarteel-test-corpus-v3-ea-husary-010063.opus"
    build_reciter(HUSARY, [Recording(path, 10, 63)], SQLiteCache(tmp_path / "c.sqlite3"), jobs=1)
    pcm = (decode_audio(path) * 32767).astype("<i2").tobytes()
    (tmp_path / "audio" / slug(HUSARY)).mkdir(parents=True)
    (tmp_path / "audio" / slug(HUSARY) / "010063.opus").write_bytes(path.read_bytes())
    config = ServerConfig(cache=f"sqlite:///{tmp_path / 'c.sqlite3'}", audio_dir=str(tmp_path / "audio"))
    start = {"protocol": "1.0", "surah": 10, "ayah": 63, "sample_rate": 16000, "encoding": "pcm_s16le"}
    with TestClient(create_app(config)) as client:
        listed = client.get("/api/reciters").json()
        assert listed["model"] == model_version()
        assert listed["reciters"] == [{"name": HUSARY, "slug": slug(HUSARY), "ayahs": 1, "audio": True}]
        assert client.get("/api/reciters", params={"surah": 10, "ayah": 64}).json()["reciters"] == []
        entry = client.get(f"/api/reciters/{HUSARY}/10/63").json()
        assert entry["spec"] == "10:63" and len(entry["words"]) > 3 and entry["pitch"]["f0"]
        assert "audio" not in entry and client.get(entry["audio_url"]).status_code == 200
        assert client.get(f"/api/reciters/{HUSARY}/10/64").status_code == 404
        assert client.get("/api/reciters/Nobody/10/63").status_code == 404
        assert client.get(f"/api/reciters/{HUSARY}/999/1").status_code == 404
        with client.websocket_connect("/ws/stream") as ws:
            ws.send_text(json.dumps({"type": "start", "data": start | {"reciter": "Nobody"}}))
            error = json.loads(ws.receive_text())
            assert error["type"] == "error" and error["data"]["code"] == "unknown_reciter"
            ws.send_text(json.dumps({"type": "start", "data": start | {"reciter": HUSARY}}))
            assert json.loads(ws.receive_text())["type"] == "ready"
            for i in range(0, len(pcm), 3200):
                ws.send_bytes(pcm[i:i + 3200])
            ws.send_text(json.dumps({"type": "stop"}))
            messages = []
            while not messages or messages[-1]["type"] != "final":
                messages.append(json.loads(ws.receive_text()))
        words = [m["data"] for m in messages if m["type"] == "word"]
        assert words and all(w["prosody"]["reciter"] == HUSARY for w in words)
        assert messages[-1]["data"]["prosody"]["scores"]["tempo"] > 90
        upload = client.post("/api/analyze", data={"ayah": "10:63", "reciter": HUSARY},
                             files={"file": ("a.opus", path.read_bytes(), "audio/ogg")})
        assert upload.status_code == 200 and upload.json()["prosody"]["reciter"] == HUSARY
        refused = client.post("/api/analyze", data={"ayah": "10:64", "reciter": HUSARY},
                              files={"file": ("a.opus", path.read_bytes(), "audio/ogg")})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_reciter"
        ranged = client.post("/api/analyze", data={"ayah": "10:63-64", "reciter": HUSARY},
                             files={"file": ("a.opus", path.read_bytes(), "audio/ogg")})
        assert ranged.status_code == 200 and ranged.json()["prosody"] is None  # one whole ayah only
        metrics = client.get("/metrics").text
        assert 'iqrah_cache_requests_total{result="hit"}' in metrics
