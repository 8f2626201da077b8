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
import logging
import time
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import soxr
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..audio import SAMPLE_RATE, AudioError
from ..quran import UnknownAyahError, parse_spec
from ..stream import Event, StreamingAnalyzer
from . import protocol as p
from .sessions import from_pcm16, to_pcm16

if TYPE_CHECKING:
    from .app import ServerState

log = logging.getLogger("iqrah.server")

STORE_EVERY_BYTES = 2 * SAMPLE_RATE  # store the session at least every second of audio (PCM16)
CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TRY_AGAIN, CLOSE_RESTART = 1000, 1001, 1008, 1013, 1012
CLOSE_INTERNAL = 1011


class StreamSession:
    def __init__(self, ws: WebSocket, server: "ServerState"):
        self.ws, self.server = ws, server
        self.analyzer: StreamingAnalyzer | None = None
        self.start: p.Start | None = None
        self.session_id: str | None = None
        self.resampler: soxr.ResampleStream | None = None
        self.unsaved = bytearray()  # PCM16 fed to the analyzer since the session was last stored
        self.stored = 0  # bytes of PCM16 the store holds for this session
        self.inbox: list[np.ndarray] = []  # audio received and not yet fed to the analyzer
        self.inbox_since = 0.0  # when its oldest chunk arrived
        self.feeding: asyncio.Task | None = None
        self.missed_pongs = 0
        self.closed = False

    # ---- lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        await self.ws.accept()
        if not self.server.admit():
            await self.ws.close(CLOSE_TRY_AGAIN, reason=f"server busy: {self.server.config.max_connections} "
                                "connections; try again shortly")
            self.server.metrics.errors.labels(p.SERVER_BUSY).inc()
            return
        pinger = asyncio.create_task(self._ping_loop())
        drain = asyncio.create_task(self.server.draining.wait())
        try:
            while not self.closed:
                receive = asyncio.create_task(self.ws.receive())
                done, _ = await asyncio.wait({receive, drain}, return_when=asyncio.FIRST_COMPLETED)
                if drain in done:
                    receive.cancel()
                    await self._shutdown()
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
                    await self._error(exc.code, exc.message)
                    if exc.fatal:
                        await self._close(CLOSE_POLICY, exc.message)
        except WebSocketDisconnect:
            pass
        except Exception:  # never let one session take the server down; tell the client
            await self._internal_error()
        finally:
            pinger.cancel()
            drain.cancel()
            self.server.release()
            await asyncio.shield(self._settle_and_store())  # even when the connection task is cancelled

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.server.config.ping_interval_s)
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
    async def _on_text(self, raw: str, arrived: float) -> None:
        try:
            kind, data = p.parse_text(raw)
        except p.ProtocolError:
            await self._settle()  # in order: the audio sent before it is handled first
            raise
        self.server.metrics.messages.labels("in", kind).inc()
        if kind not in ("audio", "pong"):
            await self._settle()
        if kind == "pong":
            self.missed_pongs = 0
        elif kind == "start":
            await self._on_start(data)
        elif kind == "audio":
            if self.analyzer is None:
                raise p.ProtocolError(p.NOT_STARTED, "send start before audio")
            await self._on_audio(p.decode_audio_message(data), arrived)
        elif kind == "stop":
            await self._on_stop()

    async def _on_start(self, data: dict) -> None:
        start = p.parse_start(data)
        if self.analyzer is not None:
            raise p.ProtocolError(p.ALREADY_STARTED, "this connection has started already; send stop first")
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
            if stored is None:
                raise p.ProtocolError(p.SESSION_NOT_FOUND, f"no session {start.session_id!r} to resume "
                                      "(it ended or expired): send start without session_id")
            if stored[0].get("spec") != start.spec:
                raise p.ProtocolError(p.SESSION_NOT_FOUND, f"session {start.session_id!r} recites "
                                      f"{stored[0].get('spec')}, not {start.spec}")
        settings = self.server.analyze_settings
        if start.settings:
            from .app import recitation_settings

            try:
                settings = replace(settings, recitation=recitation_settings(**start.settings))
            except ValueError as exc:
                raise p.ProtocolError(p.BAD_SETTINGS, str(exc)) from None
        analyzer = await asyncio.to_thread(StreamingAnalyzer, start.spec, settings, self.server.live_model,
                                           final_model=self.server.model)
        ready = {"protocol": p.PROTOCOL_VERSION,
                 "words": [{"index": w.index, "ayah": w.ayah, "number": w.number, "text": w.text}
                           for w in analyzer.reference.words]}
        if stored is not None:
            meta, audio = stored
            if len(audio) != 2 * int(meta["analyzer"].get("samples", -1)):
                # the store lost audio it had (e.g. Redis restarted): what is left is not the recitation
                raise p.ProtocolError(p.SESSION_NOT_FOUND, f"session {start.session_id!r} lost part of its "
                                      "audio: send start without session_id and the recording again")
            analyzer.restore(meta["analyzer"], from_pcm16(audio))
            self.stored = len(audio)
            self.session_id = start.session_id
            ready["resumed_from"] = {"audio_ms": int(len(audio) // 2 * 1000 / SAMPLE_RATE),
                                     "next_word": analyzer.next_word,
                                     "words": [analyzer.words[w].__dict__ | {"index": w} for w in sorted(analyzer.words)]}
        else:
            self.session_id = uuid.uuid4().hex
        self.analyzer, self.start = analyzer, start
        if start.sample_rate != SAMPLE_RATE:
            self.resampler = soxr.ResampleStream(start.sample_rate, SAMPLE_RATE, 1, dtype="float32")
        ready["session_id"] = self.session_id
        await self._store()
        await self._send("ready", ready)

    async def _on_audio(self, payload: bytes, arrived: float) -> None:
        if self.analyzer is None:
            raise p.ProtocolError(p.NOT_STARTED, "send start before audio")
        self.server.metrics.messages.labels("in", "audio").inc()
        t0 = time.perf_counter()
        samples = p.decode_pcm(payload, self.start.encoding)
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples)
        decode_ms = (time.perf_counter() - t0) * 1000
        limit = self.server.config.max_session_bytes // 4
        if self.analyzer._samples + sum(x.size for x in self.inbox) + samples.size > limit:
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
        """Feed the analyzer all the audio received so far in one job, until none is left. While
        a job runs, the next chunks gather: a busy server hands each session fewer, larger pieces
        instead of falling behind chunk by chunk."""
        try:
            while self.inbox and self.analyzer is not None and not self.closed:
                samples, arrived = np.concatenate(self.inbox), self.inbox_since
                self.inbox = []
                analyzer = self.analyzer
                step_s = self.server.stream_step_s()
                try:
                    events = await self.server.run(analyzer.feed, samples, step_s=step_s)
                except AudioError as exc:
                    too_long = "limit" in str(exc)
                    await self._error(p.SESSION_TOO_LARGE if too_long else p.BAD_AUDIO, str(exc))
                    if too_long:
                        await self._close(CLOSE_POLICY, str(exc))
                    continue
                self.unsaved.extend(to_pcm16(samples))
                self.server.metrics.observe_stages(analyzer.stage_ms)
                if "acoustic" in analyzer.stage_ms:
                    self.server.metrics.step.observe(step_s)
                if any(e.type == "word" for e in events) or len(self.unsaved) >= STORE_EVERY_BYTES:
                    await self._store()
                await self._send_events(events, arrived)
        except Exception:
            await self._internal_error()

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
        await self._settle()
        await self._store()

    async def _on_stop(self) -> None:
        if self.analyzer is None:
            raise p.ProtocolError(p.NOT_STARTED, "nothing to stop: send start first")
        await self._settle()
        arrived = time.perf_counter()
        # the last words first (cheap), then the final report (the whole recording again)
        await self._send_events(await self.server.run(self.analyzer.flush), arrived)
        try:
            events = await self.server.run_report(self.analyzer.finish)
        except AudioError as exc:  # e.g. nothing but silence: say so, keep the connection
            await self._error(p.BAD_AUDIO, str(exc))
            events = []
        self.server.metrics.observe_stages(self.analyzer.stage_ms)
        await self._send_events(events, arrived)
        if self.session_id:
            try:
                await asyncio.to_thread(self.server.store.delete, self.session_id)
            except Exception:  # it expires on its own; the recitation is over either way
                log.warning("session store unreachable: a finished session was left to expire")
        self.analyzer, self.start, self.session_id, self.resampler = None, None, None, None
        self.unsaved.clear()

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

    async def _store(self) -> None:
        if self.analyzer is None or self.session_id is None:
            return
        meta = {"spec": self.start.spec, "analyzer": self.analyzer.snapshot(), "updated": time.time()}
        audio, self.unsaved = bytes(self.unsaved), bytearray()
        store = self.server.store
        try:
            if not await asyncio.to_thread(store.save, self.session_id, meta, audio, self.stored):
                # the store does not hold what was saved before (it restarted): save all of it again
                whole = to_pcm16(self.analyzer.audio())
                await asyncio.to_thread(store.save_all, self.session_id, meta, whole)
                self.stored = len(whole)
            else:
                self.stored += len(audio)
        except Exception:  # the store is down: the stream goes on, only resuming is lost
            log.warning("session store unreachable: a session was not saved (it is kept here, saved later)")
            self.unsaved[:0] = audio
