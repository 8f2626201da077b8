"""One ``/ws/stream`` connection: protocol 1.0 around a StreamingAnalyzer.

The analyzer's work (model, alignment) runs in the server's thread pool, so the event loop keeps
serving every other connection while one session computes. Audio that arrives while the
analyzer works is gathered and fed in one piece next (a busy server falls behind by less);
other messages of a session are handled after all the audio sent before them. Errors a client
can fix are reported and the connection stays open; only those that leave nothing to go on (an
unsupported protocol, a session over its limits) close it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import soxr
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..audio import SAMPLE_RATE, AudioError, AudioLimitError, NoSpeechError
from ..config import RecitationSettings
from ..quran import UnknownAyahError, parse_spec
from ..reciters import UnknownReciterError
from ..stream import Event, StreamingAnalyzer
from . import protocol as p
from .access import client_id, key_from, origin_allowed, valid_key
from .limits import AudioPace
from .sessions import SessionTaken, from_pcm16, to_pcm16

if TYPE_CHECKING:
    from .app import ServerState

log = logging.getLogger("iqrah.server")

STORE_EVERY_BYTES = 2 * SAMPLE_RATE  # store the session at least every second of audio (PCM16)
# audio fed in one job at most: a client that sent a lot at once (a burst) gets several short jobs,
# and the other sessions' jobs take turns with them in the inference pool
MAX_FEED_SAMPLES = 4 * SAMPLE_RATE
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TRY_AGAIN, CLOSE_RESTART = 1000, 1001, 1008, 1013, 1012
CLOSE_INTERNAL = 1011


class StreamSession:
    def __init__(self, ws: WebSocket, server: "ServerState"):
        self.ws, self.server = ws, server
        self.analyzer: StreamingAnalyzer | None = None
        self.conn = p.Connection()  # the protocol's state and rules (sans I/O)
        self.session_id: str | None = None
        self.resampler: soxr.ResampleStream | None = None
        self.unsaved = bytearray()  # PCM16 fed to the analyzer and not yet handed to the store writer
        self.stored = 0  # bytes of PCM16 the store holds for this session
        self.queued: tuple[dict, bytes, bool] | None = None  # (meta, audio, whole?) the writer saves next
        self.store_lost = False  # the store no longer holds what was saved: the next save is the whole
        self.writing: asyncio.Task | None = None  # the background store writer
        self.inbox: list[np.ndarray] = []  # audio received and not yet fed to the analyzer
        self.inbox_since = 0.0  # when its oldest chunk arrived
        self.feeding: asyncio.Task | None = None
        self.preparing: asyncio.Task | None = None  # the final model on a completed window (prepare_final)
        self.missed_pongs = 0
        self.reading = False  # the loop waits for the next message (else it handles one: pongs wait)
        self.closed = False
        config = server.config
        self.pace = AudioPace(config.audio_pace, config.audio_burst_s)
        self.last_activity = time.monotonic()  # of the last start, audio or stop (pongs do not count)
        self.accepted_ms = 0.0  # of the recitation, as the client sent it (what a refusal resumes from)
        self.refusing_until = 0.0  # after a too_fast, all audio is refused until then (no gaps)
        self.owner = uuid.uuid4().hex  # this connection, as the session store knows its writer
        self.token_hash: str | None = None  # of the session's resume token
        key = key_from(ws.headers, ws.query_params)
        self.authenticated = not config.api_keys or valid_key(key, config.api_keys)
        self.key_given = key is not None
        self.client = client_id(key, config.api_keys, ws.client.host if ws.client else None)

    # ---- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        config = self.server.config
        headers = self.ws.headers
        if not origin_allowed(headers.get("origin"), headers.get("host"), config.allowed_origins) or (
                self.key_given and not self.authenticated):
            # refused during the handshake (HTTP 403): a page of another site, or a wrong key
            self.server.metrics.errors.labels(p.UNAUTHORIZED).inc()
            await self.ws.close(CLOSE_POLICY)
            return
        await self.ws.accept()
        refused = self.server.admit(self, self.client)
        if refused is not None:
            code, reason = refused
            await self.ws.close(CLOSE_TRY_AGAIN, reason=reason[:120])
            self.server.metrics.errors.labels(code).inc()
            return
        pinger = asyncio.create_task(self._ping_loop())
        drain = asyncio.create_task(self.server.draining.wait())
        try:
            while not self.closed:
                receive = asyncio.create_task(self.ws.receive())
                self.reading = True
                done, _ = await asyncio.wait({receive, drain}, timeout=self._time_left(),
                                             return_when=asyncio.FIRST_COMPLETED)
                self.reading = False
                if drain in done:
                    receive.cancel()
                    await self._shutdown()
                    break
                if not done:
                    receive.cancel()
                    await self._idle_timeout()
                    break
                msg = receive.result()
                if msg["type"] == "websocket.disconnect":
                    break
                arrived = time.perf_counter()
                try:
                    if msg.get("bytes") is not None:
                        await self._on_audio(msg["bytes"], arrived)
                    elif msg.get("text") is not None:
                        await self._on_text(msg["text"], arrived)
                except p.ProtocolError as exc:
                    await self._error(exc.code, exc.message, **exc.extra)
                    if exc.fatal:
                        await self._close(CLOSE_POLICY, exc.message)
        except WebSocketDisconnect:
            pass
        except Exception:  # never let one session take the server down; tell the client
            await self._internal_error()
        finally:
            pinger.cancel()
            drain.cancel()
            self.server.release(self, self.client, streaming=self.analyzer is not None)
            await asyncio.shield(self._settle_and_store())  # even when the connection task is cancelled

    def _time_left(self) -> float | None:
        """Seconds until this connection idles out: no start ``start_timeout_s`` after it opened
        (or after its last stop), no audio ``idle_timeout_s`` into a stream."""
        config = self.server.config
        limit = config.idle_timeout_s if self.analyzer is not None else config.start_timeout_s
        return None if limit <= 0 else max(0.0, self.last_activity + limit - time.monotonic())

    async def _idle_timeout(self) -> None:
        config = self.server.config
        if self.analyzer is None:
            await self._error(p.IDLE_TIMEOUT, f"no start within {config.start_timeout_s:g} s: closing")
            await self._close(CLOSE_POLICY, "no start")
            return
        await self._settle_and_store()
        await self._error(p.IDLE_TIMEOUT, f"no audio for {config.idle_timeout_s:g} s: closing; reconnect to resume",
                          resumable=self.session_id is not None, session_id=self.session_id)
        await self._close(CLOSE_GOING_AWAY, "idle")

    def make_room(self) -> None:
        """The server needs this waiting connection's place for a newer one: close it."""
        async def close():
            if self.analyzer is None:
                await self._error(p.IDLE_TIMEOUT, "closed to make room for newer connections: send start as soon "
                                  "as connected")
                await self._close(CLOSE_TRY_AGAIN, "closed to make room")

        self._making_room = asyncio.get_running_loop().create_task(close())  # (a task must be held)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.server.config.ping_interval_s)
            if not self.reading:  # e.g. a long final report: the client's pongs wait to be read
                self.missed_pongs = 0
                continue
            if self.missed_pongs >= 2:
                await self._error(p.TIMEOUT, "no pong to two pings: closing; reconnect to resume", resumable=True)
                await self._close(CLOSE_GOING_AWAY, "ping timeout")
                return
            self.missed_pongs += 1
            await self._send("ping", {})

    async def _shutdown(self) -> None:
        """The server is stopping: keep the session resumable and tell the client."""
        await self._settle_and_store()
        await self._error(p.SHUTTING_DOWN, "the server is restarting; reconnect with your session_id to resume",
                          resumable=self.session_id is not None, session_id=self.session_id)
        await self._close(CLOSE_RESTART, "server restarting")

    # ---- messages -----------------------------------------------------------------------
    @property
    def start(self) -> p.Start | None:
        return self.conn.start

    async def _on_text(self, raw: str, arrived: float) -> None:
        try:
            kind, value = self.conn.receive_text(raw)
        except p.ProtocolError:
            await self._settle()  # in order: the audio sent before it is handled first
            raise
        self.server.metrics.messages.labels("in", kind).inc()
        if kind not in ("audio", "pong"):
            await self._settle()
        if kind == "pong":
            self.missed_pongs = 0
        elif kind == "start":
            await self._on_start(value)
        elif kind == "audio":
            await self._on_audio(value, arrived)
        elif kind == "stop":
            await self._on_stop()

    async def _on_start(self, start: p.Start) -> None:
        if not self.authenticated:
            if not valid_key(start.api_key, self.server.config.api_keys):
                raise p.ProtocolError(p.UNAUTHORIZED, "an API key is needed: the api_key field of start, the "
                                      "api_key query parameter or an Authorization: Bearer header", fatal=True)
            self.authenticated = True
        try:
            parse_spec(start.spec)
        except UnknownAyahError as exc:
            raise p.ProtocolError(p.UNKNOWN_AYAH, str(exc)) from None
        stored = None
        if start.session_id is not None:
            try:
                stored = await asyncio.to_thread(self.server.store.load, start.session_id)
            except Exception:
                log.warning("session store unreachable: a resume was refused")
                raise p.ProtocolError(p.STORE_UNAVAILABLE, "sessions cannot be resumed now (the session store "
                                      "is unreachable): send start without session_id") from None
            if stored is None or not _token_matches(start.resume_token, stored[0].get("token")):
                # a wrong token is told as an unknown session: the reply says nothing of what exists
                raise p.ProtocolError(p.SESSION_NOT_FOUND, f"no session {start.session_id!r} to resume with "
                                      "this resume_token (it ended or expired): send start without session_id")
            if stored[0].get("spec") != start.spec:
                raise p.ProtocolError(p.SESSION_NOT_FOUND, f"session {start.session_id!r} recites "
                                      f"{stored[0].get('spec')}, not {start.spec}")
        settings = self.server.analyze_settings
        if start.settings:
            try:
                settings = replace(settings, recitation=RecitationSettings.from_madd(**start.settings))
            except ValueError as exc:
                raise p.ProtocolError(p.BAD_SETTINGS, str(exc)) from None
        try:
            reciter = await asyncio.to_thread(self.server.reciter, start.reciter, start.spec)
        except UnknownReciterError as exc:
            raise p.ProtocolError(p.UNKNOWN_RECITER, str(exc)) from None
        if not self.server.start_stream(self):
            await self._error(p.SERVER_BUSY, f"server busy: {self.server.config.max_connections} streams; "
                              "try again shortly")
            await self._close(CLOSE_TRY_AGAIN, "server busy")
            return
        try:
            analyzer = await self.server.run_start(self.client, partial(
                StreamingAnalyzer, start.spec, settings, self.server.live_model, final_model=self.server.model,
                reciter=reciter))
            await self._begin(start, analyzer, stored)
        except BaseException:
            if self.analyzer is None:
                self.server.end_stream(self)
            raise
        self.last_activity = time.monotonic()

    async def _begin(self, start: p.Start, analyzer: StreamingAnalyzer, stored: tuple[dict, bytes] | None) -> None:
        ready = {"protocol": p.PROTOCOL_VERSION,
                 "words": [{"index": w.index, "ayah": w.ayah, "number": w.number, "text": w.text}
                           for w in analyzer.reference.words]}
        if stored is not None:
            meta, audio = stored
            if len(audio) != 2 * int(meta["analyzer"].get("samples", -1)):
                # the store lost audio it had (e.g. Redis restarted): what is left is not the recitation
                raise p.ProtocolError(p.SESSION_NOT_FOUND, f"session {start.session_id!r} lost part of its "
                                      "audio: send start without session_id and the recording again")
            try:
                await asyncio.to_thread(self.server.store.claim, start.session_id, self.owner)
            except Exception:
                raise p.ProtocolError(p.STORE_UNAVAILABLE, "sessions cannot be resumed now (the session store "
                                      "is unreachable): send start without session_id") from None
            analyzer.restore(meta["analyzer"], from_pcm16(audio))
            self.stored = len(audio)
            self.session_id, self.token_hash, token = start.session_id, meta["token"], start.resume_token
            self.accepted_ms = len(audio) // 2 * 1000 / SAMPLE_RATE
            ready["resumed_from"] = {"audio_ms": int(len(audio) // 2 * 1000 / SAMPLE_RATE),
                                     "next_word": analyzer.next_word,
                                     "words": [analyzer.words[w].to_dict() for w in sorted(analyzer.words)]}
        else:
            self.session_id, token = uuid.uuid4().hex, secrets.token_urlsafe(24)
            self.token_hash = _hash_token(token)
            self.accepted_ms = 0.0
        self.analyzer = analyzer
        self.conn.started(start)
        if start.sample_rate != SAMPLE_RATE:
            self.resampler = soxr.ResampleStream(start.sample_rate, SAMPLE_RATE, 1, dtype="float32")
        ready["session_id"], ready["resume_token"] = self.session_id, token
        self._store_soon()
        await self._send("ready", ready)

    async def _on_audio(self, payload: bytes, arrived: float) -> None:
        self.conn.receive_bytes(payload)
        self.server.metrics.messages.labels("in", "audio").inc()
        self.last_activity = time.monotonic()
        t0 = time.perf_counter()
        samples = p.decode_pcm(payload, self.start.encoding)
        seconds, now = samples.size / self.start.sample_rate, time.monotonic()
        config = self.server.config
        if now < self.refusing_until:
            wait, why = self.refusing_until - now, "audio is refused for now after audio too fast"
        elif wait := self.pace.take(seconds):
            why = f"audio faster than {config.audio_pace:g}x real time"
        elif wait := self.server.clients.audio(self.client, seconds):
            why = f"this client sends more than {config.client_audio_per_minute} s of audio a minute"
        if wait:
            # refused before the resampler hears it, and so is all audio until the wait is over: the
            # stream has no gap when the client sends again from audio_ms
            self.refusing_until = max(self.refusing_until, now + wait)
            raise p.ProtocolError(p.TOO_FAST, f"{why}: not kept; send it again from audio_ms in {wait:.1f} s",
                                  audio_ms=int(self.accepted_ms), retry_after_ms=int(wait * 1000) + 1)
        self.accepted_ms += seconds * 1000
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples)
        decode_ms = (time.perf_counter() - t0) * 1000
        limit = self.server.config.max_session_bytes // 4
        if self.analyzer.samples_received + sum(x.size for x in self.inbox) + samples.size > limit:
            await self._error(p.SESSION_TOO_LARGE, f"the session holds more than "
                              f"{self.server.config.max_session_bytes // 2**20} MB of audio: send stop")
            await self._close(CLOSE_POLICY, "session too large")
            return
        if not np.all(np.isfinite(samples)):
            raise p.ProtocolError(p.BAD_AUDIO, "audio contains NaN or infinite samples")
        self.server.metrics.observe_stages({"decode": decode_ms})
        if not self.inbox:
            self.inbox_since = arrived
        self.inbox.append(samples)
        if self.feeding is None or self.feeding.done():
            self.feeding = asyncio.create_task(self._feed_inbox())

    async def _feed_inbox(self) -> None:
        """Feed the analyzer the audio received so far, in jobs of at most MAX_FEED_SAMPLES, until
        none is left. While a job runs, the next chunks gather: a busy server hands each session
        fewer, larger pieces instead of falling behind chunk by chunk."""
        try:
            while self.inbox and self.analyzer is not None and not self.closed:
                samples, arrived = np.concatenate(self.inbox), self.inbox_since
                samples, rest = samples[:MAX_FEED_SAMPLES], samples[MAX_FEED_SAMPLES:]
                self.inbox = [rest] if rest.size else []
                analyzer = self.analyzer
                step_s = self.server.stream_step_s()
                try:
                    events = await self.server.run(analyzer.feed, samples, step_s=step_s)
                except AudioError as exc:
                    too_long = isinstance(exc, AudioLimitError)
                    await self._error(p.SESSION_TOO_LARGE if too_long else p.BAD_AUDIO, str(exc))
                    if too_long:
                        await self._close(CLOSE_POLICY, str(exc))
                    continue
                self.unsaved.extend(to_pcm16(samples))
                self.server.metrics.observe_stages(analyzer.stage_ms)
                if "acoustic" in analyzer.stage_ms:
                    self.server.metrics.step.observe(step_s)
                if any(e.type == "word" for e in events) or len(self.unsaved) >= STORE_EVERY_BYTES:
                    self._store_soon()
                await self._send_events(events, arrived)
                if analyzer.final_window_due and (self.preparing is None or self.preparing.done()):
                    # beside the feeds, at a low priority: live words do not wait for it, and the
                    # final report does not either (a window not run by then, it runs itself)
                    self.preparing = asyncio.create_task(self._prepare_final(analyzer))
        except Exception:
            await self._internal_error()

    async def _prepare_final(self, analyzer: StreamingAnalyzer) -> None:
        """Run the final model on the windows the audio has completed, so that little is left to
        run after stop. Only a saving: should it fail, the final report runs them itself."""
        try:
            while analyzer.final_window_due and not self.closed:
                await self.server.run_prepare(self.client, analyzer.prepare_final)
        except Exception:
            log.exception("preparing the final report failed; it will run the window itself")

    async def _internal_error(self) -> None:
        """A bug, not the client's doing: log it, tell the client it may resume, close."""
        log.exception("stream session failed")
        await self._error(p.INTERNAL, "internal error; the session was saved, reconnect to resume",
                          resumable=True)
        await self._close(CLOSE_INTERNAL, "internal error")

    async def _settle(self) -> None:
        """Wait until every chunk received has been fed to the analyzer."""
        while self.feeding is not None and not self.feeding.done():
            await self.feeding

    async def _settle_and_store(self) -> None:
        """Feed what was received, then save the session and wait until it is written."""
        await self._settle()
        for _ in range(2):  # twice when the store turns out to have lost the session (whole again)
            self._store_soon()
            if self.writing is not None:
                await self.writing
            if not self.store_lost:
                break

    async def _on_stop(self) -> None:
        await self._settle()
        arrived = time.perf_counter()
        # the last words first (cheap), then the final report (the whole recording again)
        await self._send_events(await self.server.run(self.analyzer.flush), arrived)
        try:
            events = await self.server.run_final(self.client, self.analyzer.finish)
        except AudioError as exc:  # e.g. nothing but silence: say so, keep the connection
            await self._error(p.NO_SPEECH if isinstance(exc, NoSpeechError) else p.BAD_AUDIO, str(exc))
            events = []
        self.server.metrics.observe_stages(self.analyzer.stage_ms)
        await self._send_events(events, arrived)
        self.queued = None  # over: what is still to be written is not needed, and nothing may follow the delete
        if self.writing is not None:
            await self.writing
        if self.session_id:
            try:
                await asyncio.to_thread(self.server.store.delete, self.session_id)
            except Exception:  # it expires on its own; the recitation is over either way
                log.warning("session store unreachable: a finished session was left to expire")
        self.analyzer, self.session_id, self.resampler = None, None, None
        self.conn.stopped()
        self.unsaved.clear()
        self.server.end_stream(self)
        self.last_activity = time.monotonic()

    # ---- output -------------------------------------------------------------------------
    async def _send_events(self, events: list[Event], arrived: float) -> None:
        if not events:
            return
        t0 = time.perf_counter()
        for event in events:
            await self._send(event.type, {**event.data, "audio_ms": event.audio_ms})
        sent = time.perf_counter()
        self.server.metrics.stage.labels("send").observe(sent - t0)
        self.server.metrics.chunk_latency.observe(sent - arrived)

    async def _send(self, kind: str, data: dict) -> None:
        if self.closed or self.ws.application_state != WebSocketState.CONNECTED:
            return
        try:
            await self.ws.send_text(p.message(kind, data))
            self.server.metrics.messages.labels("out", kind).inc()
        except (WebSocketDisconnect, RuntimeError):
            self.closed = True

    async def _error(self, code: str, message: str, **extra) -> None:
        self.server.metrics.errors.labels(code).inc()
        await self._send("error", {"code": code, "message": message, **extra})

    async def _close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            try:
                await self.ws.close(code, reason=reason[:120])
            except RuntimeError:
                pass

    # ---- the session store (written in the background) -------------------------------------
    def _store_soon(self) -> None:
        """Hand the store writer this moment's state and return at once: a slow store (Redis
        paused) must not hold back this session's verdicts. Call it between feeds only (it reads
        the analyzer). States handed over while one is written merge into one write, in order."""
        if self.analyzer is None or self.session_id is None:
            return
        meta = {"spec": self.start.spec, "analyzer": self.analyzer.snapshot(), "updated": time.time(),
                "token": self.token_hash}
        if self.store_lost:  # the store restarted and lost the session: save all of it again
            state, self.store_lost = (meta, to_pcm16(self.analyzer.audio()), True), False
        else:
            state = (meta, bytes(self.unsaved), False)
        self.queued = _merged(self.queued, state)
        self.unsaved.clear()
        if self.writing is None or self.writing.done():
            self.writing = asyncio.create_task(self._write_queued())

    async def _write_queued(self) -> None:
        store = self.server.store
        while self.queued is not None and self.session_id is not None:
            (meta, audio, whole), self.queued = self.queued, None
            try:
                if whole:
                    await asyncio.to_thread(store.save_all, self.session_id, meta, audio, self.owner)
                    self.stored = len(audio)
                elif await asyncio.to_thread(store.save, self.session_id, meta, audio, self.stored, self.owner):
                    self.stored += len(audio)
                else:  # the store does not hold what was saved before: the next state goes whole
                    self.store_lost, self.queued = True, None
                    return
            except SessionTaken:  # a client with the resume token goes on with it elsewhere
                self.session_id, self.queued = None, None
                await self._error(p.SESSION_TAKEN, "this session was resumed by another connection")
                await self._close(CLOSE_POLICY, "session taken over")
                return
            except Exception:  # the store is down: the stream goes on, only resuming is lost for now
                log.warning("session store unreachable: a session was not saved (it is kept here, saved later)")
                self.queued = _merged((meta, audio, whole), self.queued)  # written with the next state
                return


def _merged(older: tuple | None, newer: tuple | None) -> tuple | None:
    """One write for two states (meta, audio, whole?) handed to the store in turn: the newer
    meta, and the older's audio before the newer's, unless the newer holds the whole."""
    if older is None or (newer is not None and newer[2]):
        return newer
    if newer is None:
        return older
    return newer[0], older[1] + newer[1], older[2]


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_matches(token: str | None, stored_hash: str | None) -> bool:
    return bool(token and stored_hash) and hmac.compare_digest(_hash_token(token), stored_hash)
