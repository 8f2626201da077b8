"""GET /audio/{reciter}/{surah}/{ayah}: immutable caching, strong ETag, Range, no way out of the folder."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from iqrah.server.audio_origin import IMMUTABLE, audio_router


@pytest.fixture()
def client(tmp_path):
    root = tmp_path / "reciters"
    (root / "husary").mkdir(parents=True)
    (root / "husary" / "001002.mp3").write_bytes(bytes(range(256)) * 40)
    (root / "husary" / "112001.opus").write_bytes(b"OggS" + b"\x01" * 500)
    (tmp_path / "secret.mp3").write_bytes(b"secret")
    (root / "alafasy").symlink_to(tmp_path)  # a link out of the folder is not a reciter
    app = FastAPI()
    app.include_router(audio_router(root))
    return TestClient(app)


def test_a_file_with_immutable_caching_and_a_strong_etag(client):
    r = client.get("/audio/husary/1/2")
    assert r.status_code == 200 and r.content == bytes(range(256)) * 40
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.headers["cache-control"] == IMMUTABLE
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get("/audio/husary/1/2", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content and again.headers["etag"] == etag
    assert client.get("/audio/husary/112/1").headers["content-type"] == "audio/ogg"


def test_range_requests(client):
    r = client.get("/audio/husary/1/2", headers={"Range": "bytes=256-511"})
    assert r.status_code == 206 and r.content == bytes(range(256))
    assert r.headers["content-range"] == "bytes 256-511/10240"
    r = client.get("/audio/husary/1/2", headers={"Range": "bytes=20000-"})
    assert r.status_code == 416


@pytest.mark.parametrize("path", ["/audio/husary/1/3", "/audio/husary/115/1", "/audio/husary/1/8",
                                  "/audio/nobody/1/2", "/audio/Husary/1/2", "/audio/..%2F..%2Fetc/1/2",
                                  "/audio/alafasy/1/2", "/audio/husary/0/0", "/audio/husary/-1/2"])
def test_nothing_outside_the_folder_or_the_quran(client, path):
    r = client.get(path)
    assert r.status_code in (404, 422)
    assert b"secret" not in r.content


def test_no_folder_configured_answers_404():
    app = FastAPI()
    app.include_router(audio_router(None))
    r = TestClient(app).get("/audio/husary/1/2")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_the_server_serves_its_audio_folder(tmp_path):
    from iqrah.server.app import create_app
    from iqrah.server.config import ServerConfig

    (tmp_path / "husary").mkdir()
    (tmp_path / "husary" / "001002.mp3").write_bytes(b"ID3" + b"\x00" * 100)
    app = create_app(ServerConfig(audio_dir=str(tmp_path), cache="none"))  # no model needed (not loaded)
    r = TestClient(app).get("/audio/husary/1/2")
    assert r.status_code == 200 and r.headers["cache-control"] == IMMUTABLE
