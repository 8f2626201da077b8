"""Who may use the server: optional API keys, the origins whose pages may, and the headers that
tell browsers how to treat our responses (CSP, nosniff, referrer, framing, CORS).

API keys (``IQRAH_API_KEYS``, comma separated; none: no authentication) are given as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; a WebSocket may instead give it as the
query parameter ``api_key`` or the field ``api_key`` of its ``start`` message (browsers cannot
set headers on a WebSocket). The page (``/``, ``/static/``), ``/health`` and ``/ready`` need no key; every
other route does, ``/metrics`` and ``/docs`` included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = ("/", "/health", "/ready", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")  # FastAPI's pages load their scripts from a CDN
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


def key_from(headers: Headers, query: dict | None = None) -> str | None:
    """The API key a request carries, if any."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or (query or {}).get("api_key") or None


def valid_key(key: str | None, keys: tuple[str, ...]) -> bool:
    if not key:
        return False
    # compare every key in constant time, so a reply's delay tells nothing about a key
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in keys]
    return any(matches)


def client_id(key: str | None, keys: tuple[str, ...], host: str | None) -> str:
    """Whom a limit counts: a valid key (hashed: keys never reach logs or memory dumps of the
    limiter), else the IP address."""
    if keys and valid_key(key, keys):
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"ip:{host or 'unknown'}"


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """A WebSocket from a page of another site is refused unless that site is allowed. No Origin
    (a client that is not a browser) and the page's own host are always allowed; its host on any
    port, as a reverse proxy may leave the port out of Host (NGINX's ``$host`` does)."""
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    try:
        origin_host, own_host = urlsplit(origin).hostname, urlsplit(f"//{host or ''}").hostname
    except ValueError:  # a malformed Origin or Host
        return False
    return origin_host is not None and origin_host == own_host


def security_headers(path: str, host: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
               (b"x-frame-options", b"DENY")]
    if path not in DOC_PATHS:
        # the page: its own scripts, styles and fonts; its WebSocket to this host; audio it decodes
        sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
        csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               f"font-src 'self'; connect-src 'self'{sockets}; media-src 'self' blob:; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
        headers.append((b"content-security-policy", csp.encode()))
    return headers


class AccessMiddleware:
    """HTTP requests: the API key check (401 in the usual error shape) and the security headers
    on every response. WebSockets are checked by the stream endpoint (ws.py)."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]):
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = scope["path"]
        extra = security_headers(path, headers.get("host"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or scope["method"] == "OPTIONS"
        if self.keys and not open_path and not valid_key(key_from(headers), self.keys):
            body = json.dumps({"error": {"code": "unauthorized", "message": "an API key is needed: "
                                         "Authorization: Bearer <key> or X-API-Key: <key>"}}).encode()
            await send_with_headers({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer")]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)
