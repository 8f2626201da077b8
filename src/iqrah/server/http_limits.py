"""Limits of the HTTP transport: how long a client may take to send its request headers and its
body, how large a body and a WebSocket message may be, and the uvicorn settings that go with them.

``iqrah serve`` (and anyone running the app under uvicorn) passes ``uvicorn_options(config)``:
without them uvicorn waits for ever for the headers of a half-open connection and buffers
WebSocket messages of up to 16 MB before the application sees them.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial

import h11
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServerConfig
from .protocol import MAX_FRAME_BYTES

# the largest WebSocket message read at all: a 1 MB audio frame as base64 JSON and a little more;
# a larger one closes the connection (1009) as soon as its frame header announces it
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES * 4 // 3 + 64 * 1024
MAX_HEADER_BYTES = 16 * 1024  # request line and headers
FORM_OVERHEAD_BYTES = 1 << 20  # an upload's other form fields and multipart boundaries


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, but a connection that has not sent a whole request line and
    headers ``header_timeout_s`` after it opened (or after its first byte of a later request)
    is closed. (uvicorn only times out idle connections between two requests.)"""

    def __init__(self, *args, header_timeout_s: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        if self.conn.their_state is not h11.IDLE:  # the headers are in (or the connection is done)
            self._stop_watching()
        elif self._header_timer is None and self.header_timeout_s > 0:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_watching(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if (self.conn.their_state is h11.IDLE and not self.transport.is_closing()
                and self.transport.get_protocol() is self):
            self.transport.close()


class BodyRefused(HTTPException):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(status_code=status, detail=message)
        self.code = code


def refusal(exc: BodyRefused):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"code": exc.code, "message": exc.detail}}, status_code=exc.status_code)


class BodyLimitMiddleware:
    """A request body is refused as it arrives: 413 at once when its Content-Length is over
    ``max_bytes``, else as soon as the bytes received pass it (so nothing larger is ever spooled
    to disk), and 408 when it pauses for more than ``timeout_s``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    def _too_large(self) -> BodyRefused:
        return BodyRefused(413, "file_too_large", f"request bodies are limited to {self.max_bytes // 2**20} MB")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            refused = self._too_large()
            body = json.dumps({"error": {"code": refused.code, "message": refused.detail}}).encode()
            await send({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        received, complete = 0, False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # e.g. waiting for the client to disconnect: no limit applies
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s if self.timeout_s > 0 else None)
            except TimeoutError:
                raise BodyRefused(408, "timeout", f"the request body paused for more than {self.timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)


def uvicorn_options(config: ServerConfig) -> dict:
    """The keyword arguments of ``uvicorn.Config``/``uvicorn.run`` that enforce the transport
    limits (the protocol class is a partial of an importable class, so ``workers > 1`` works)."""
    return {
        "http": partial(HeaderTimeoutH11Protocol, header_timeout_s=config.header_timeout_s),
        # reads one message at a time (pausing the socket until the application takes it), so a
        # connection holds at most one message of MAX_MESSAGE_BYTES; the legacy "websockets"
        # implementation read up to 32 ahead
        "ws": "websockets-sansio",
        "ws_max_size": MAX_MESSAGE_BYTES,
        "timeout_keep_alive": config.keep_alive_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_graceful_shutdown": 10,
    }
