"""Reference audio for a CDN to cache: ``GET /audio/{reciter}/{surah}/{ayah}``.

Files live under one folder, a folder per reciter, named as EveryAyah names them
(``<root>/<reciter>/SSSAAA.mp3``, or .opus, .ogg, .m4a, .wav, .flac). A file never changes once
published, so responses are ``Cache-Control: public, max-age=31536000, immutable`` with a strong
ETag from the file's content (``If-None-Match`` answers 304); Range requests answer 206 (a
player seeks to a word). The reciter's name is a slug (``[a-z0-9-]``), the surah and ayah
numbers, so no request can reach outside the folder.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from ..quran.text import SURAH_COUNT, ayah_count

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
TYPES = {".mp3": "audio/mpeg", ".opus": "audio/ogg", ".ogg": "audio/ogg", ".m4a": "audio/mp4",
         ".wav": "audio/wav", ".flac": "audio/flac"}
IMMUTABLE = "public, max-age=31536000, immutable"


@lru_cache(maxsize=4096)
def _etag(path: str, mtime_ns: int, size: int) -> str:
    """A strong validator from the content (recomputed only when the file changes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f'"{digest.hexdigest()[:32]}"'


def find_audio(root: Path, reciter: str, surah: int, ayah: int) -> Path | None:
    """The reciter's file of this ayah under ``root``, or None (bad names never touch the disk)."""
    if not SLUG.match(reciter) or not 1 <= surah <= SURAH_COUNT or not 1 <= ayah <= ayah_count(surah):
        return None
    folder = (root / reciter).resolve()
    if folder.parent != root.resolve() or not folder.is_dir():
        return None
    for suffix in TYPES:
        path = folder / f"{surah:03d}{ayah:03d}{suffix}"
        if path.is_file():
            return path
    return None


def audio_router(root: Path | None) -> APIRouter:
    router = APIRouter()

    @router.get("/audio/{reciter}/{surah}/{ayah}")
    def reference_audio(reciter: str, surah: int, ayah: int, request: Request) -> Response:
        path = find_audio(root, reciter, surah, ayah) if root is not None else None
        if path is None:
            return JSONResponse({"error": {"code": "not_found", "message":
                                           f"no recording of {surah}:{ayah} by {reciter!r} on this server"}},
                                status_code=404)
        stat = path.stat()
        etag = _etag(str(path), stat.st_mtime_ns, stat.st_size)
        headers = {"etag": etag, "cache-control": IMMUTABLE}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return FileResponse(path, media_type=TYPES[path.suffix], headers=headers)

    return router
