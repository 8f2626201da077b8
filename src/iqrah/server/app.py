"""The FastAPI application: ``/ws/stream``, ``POST /api/analyze``, ``/health``, ``/metrics``.

A thin adapter: the work is done by ``iqrah.analyze`` and ``iqrah.stream``; this module holds
the shared state of one server process (model, thread pool, session store, metrics, limits).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from threadpoolctl import threadpool_limits

from ..acoustic.batching import BatchingModel
from ..analyze import AnalyzeSettings, analyze
from ..audio import AudioError, NoSpeechError
from ..cache import Cache, open_cache
from ..config import RecitationSettings
from ..quran import UnknownAyahError, build_reference
from ..quran.names import SURAH_NAMES_EN
from ..quran.reference import use_reference_cache
from ..quran.text import SURAH_COUNT, ayah_count, surah_name_ar
from ..reciters import UnknownReciterError, catalogue, find_reciter, model_key, slug
from . import protocol as p
from .access import AccessMiddleware, client_id, key_from
from .audio_origin import audio_router, find_audio
from .config import ServerConfig
from .http_limits import FORM_OVERHEAD_BYTES, BodyLimitMiddleware, BodyRefused, refusal
from .limits import ClientLimits
from .metrics import Metrics
from .reports import FairPool
from .sessions import SessionStore, make_store
from .ws import StreamSession

log = logging.getLogger("iqrah.server")

__all__ = ["ServerConfig", "ServerState", "create_app"]

STEP_S = 0.25  # new audio per stream step on an idle server
MAX_STEP_S = 2.0  # ... and on a busy one
TARGET_BUSY = 0.6  # the share of time the inference threads may work before steps grow
MAX_BATCH = 4  # model calls run together at most (a 2 s window: no gain past 4 on a CPU)
UPLOAD_NICE = 10  # uploads' threads yield the cores to live work (finals, live steps) when contended
PREPARE_NICE = 19  # work that only saves time later (a final's windows run ahead): idle cycles only


class ServerState:
    def __init__(self, config: ServerConfig, model=None, store: SessionStore | None = None, live_model=None):
        self.config = config
        self.metrics = Metrics()
        self.model = None  # uploads and final reports
        self.live_model = None  # the live steps of a stream
        self.model_error: str | None = None
        self.store = store or make_store(config.redis_url)
        self.analyze_settings = AnalyzeSettings()
        self.cache = self._open_cache(config.cache)
        # parallelism comes from the pool (and uvicorn workers): numpy's BLAS must not start
        # threads of its own in every pool thread, they would fight over the cores
        threadpool_limits(1)
        self.pool = ThreadPoolExecutor(max_workers=config.inference_threads, thread_name_prefix="iqrah-infer")
        if model is not None:
            self._use_models(model, live_model or model)
        # whole-recording reports take 0.1 s to seconds each: they have threads of their own, so
        # live words do not queue behind them, shared fairly between clients (reports.py; the
        # streams of one address may use every report thread no other client waits for); a
        # stream's final never waits for an upload, and uploads run at a lower CPU priority
        self.final_pool = FairPool(config.report_threads, "iqrah-final", per_client=config.report_threads)
        self.upload_pool = FairPool(config.upload_threads, "iqrah-upload", nice=UPLOAD_NICE)
        # a stream's final-report windows run ahead (StreamingAnalyzer.prepare_final) on one thread
        # at the lowest CPU priority: on the cores live work and finals leave idle, else hardly
        self.prepare_pool = FairPool(1, "iqrah-prepare", nice=PREPARE_NICE)
        # a stream's reference and analyzer (ms for an ayah, seconds for 2:2-286): threads of their
        # own, so that no client's starts hold the threads that save every stream's session
        # (asyncio's default executor)
        self.start_pool = FairPool(2, "iqrah-start")
        self.store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iqrah-store")
        self.clients = ClientLimits(config)
        self.draining = asyncio.Event()
        self._busy_s = 0.0  # seconds the inference threads worked since _measured_at
        self._measured_at = time.perf_counter()
        self._step_s = STEP_S
        self._waiting: dict = {}  # connections without a stream (StreamSession -> None), oldest first
        self._streams = 0  # connections with a stream started
        self._lock = threading.Lock()

    def _open_cache(self, address: str) -> Cache:
        """The reference cache (text references, reference reciters), its gets counted in the
        metrics; a cache that cannot be opened is reported and replaced by none (the phonetizer
        then works for every request, as without a cache)."""
        try:
            cache = open_cache(address)
        except Exception as exc:  # noqa: BLE001 - a bad address, an unreachable Redis, a read-only disk
            log.warning("reference cache %r unavailable (%s): references are built per request", address,
                        type(exc).__name__)
            cache = Cache()
        cache.on_get = self.metrics.observe_cache_get
        use_reference_cache(cache if cache.kind != "none" else None)
        return cache

    def reciter(self, name: str | None, spec: str) -> tuple[str, dict] | None:
        """(name, entry) of a reference reciter for ``spec`` measured by the stream's final model
        (``reciters.find_reciter``: None for a range or a word span)."""
        return find_reciter(self.cache, name, spec, self.model_key())

    def model_key(self) -> str:
        """The final model's key: reciter entries measured by another model are not read."""
        return model_key(self.model.model if isinstance(self.model, BatchingModel) else self.model)

    def load_model(self) -> None:
        if self.model is not None:
            return
        from ..acoustic.registry import live_model_name, load_model

        try:
            # the pool runs inference_threads calls at once: one onnxruntime thread each
            model = load_model(self.config.model, threads=1)
            live_name = self.config.live_model or live_model_name(self.config.model)
            self._use_models(model, load_model(live_name, threads=1) if live_name else model)
        except (FileNotFoundError, ValueError) as exc:
            self.model_error = str(exc)

    def _use_models(self, model, live_model) -> None:
        """Model calls of several sessions that wait for a free core run as one batch, when the
        live model computes a batch exactly as its items one by one (float models; not the bundled
        ones, whose dynamic INT8 quantization scales activations by the whole batch). Then the
        pool gets more threads than cores, so that calls can wait together."""
        self.metrics.set_build(_model_name(model), _model_name(live_model))
        if not live_model.batches_exactly():
            self.model, self.live_model = model, live_model
            return
        self.pool = ThreadPoolExecutor(max_workers=self.config.inference_threads * MAX_BATCH,
                                       thread_name_prefix="iqrah-infer")
        # whole recordings (finals, uploads) count as a runner too, as without batching
        batching = BatchingModel(live_model, runners=self.config.inference_threads + 1, max_batch=MAX_BATCH,
                                 on_batch=self.metrics.batch.observe)
        self.model, self.live_model = (batching if model is live_model else model), batching

    async def run_final(self, client: str, fn, *args):
        """A stream's final report, when the client's turn comes (reports.py)."""
        return await self.final_pool.run(client, fn, *args)

    async def run_upload(self, client: str, fn, *args):
        return await self.upload_pool.run(client, fn, *args)

    async def run_prepare(self, client: str, fn, *args):
        """Work that only saves time later (a final report's windows run ahead)."""
        return await self.prepare_pool.run(client, fn, *args)

    async def run_start(self, client: str, fn, *args):
        """Build a stream's analyzer (its reference), when the client's turn comes."""
        return await self.start_pool.run(client, fn, *args)

    async def run(self, fn, *args, **kwargs):
        """Run blocking work (model, alignment) in the inference pool."""

        def job():
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self._busy_s += time.perf_counter() - t0

        return await asyncio.get_running_loop().run_in_executor(self.pool, job)

    def stream_step_s(self) -> float:
        """How much new audio a stream gathers before it is aligned again. Every half second the
        step is scaled by how busy the inference threads were against TARGET_BUSY: 0.25 s on an
        idle server, up to 2 s on a busy one (fewer, larger steps cost less per second of audio)."""
        now = time.perf_counter()
        elapsed = now - self._measured_at
        if elapsed >= 0.5:
            with self._lock:
                busy, self._busy_s = self._busy_s, 0.0
            self._measured_at = now
            utilisation = busy / (elapsed * self.config.inference_threads)
            self._step_s = min(MAX_STEP_S, max(STEP_S, self._step_s * utilisation / TARGET_BUSY))
        return self._step_s

    def admit(self, session, client: str) -> tuple[str, str] | None:
        """Count a new connection, waiting until it starts a stream, or say why not: (error code,
        close reason). A server whose streams are all taken refuses at once, as does a client over
        its limits. Past ``max_pending`` connections waiting, the one that waited longest is
        closed to make room: sockets that never start cannot keep newcomers out."""
        config = self.config
        oldest = None
        with self._lock:
            if self.draining.is_set():
                return p.SHUTTING_DOWN, "server restarting"
            if self._streams >= config.max_connections:
                return p.SERVER_BUSY, f"server busy: {config.max_connections} connections; try again shortly"
            refused = self.clients.connect(client)
            if refused is not None:
                return p.RATE_LIMITED, refused
            if self._waiting and len(self._waiting) >= config.max_pending:
                oldest = next(iter(self._waiting))
                del self._waiting[oldest]
            self._waiting[session] = None
        if oldest is not None:
            oldest.make_room()
        self._count_gauges()
        self._count_across_servers(self.store.connection_opened)
        return None

    def start_stream(self, session) -> bool:
        """A waiting connection starts a stream, if the server has room for one more."""
        with self._lock:
            if self._streams >= self.config.max_connections:
                return False
            self._waiting.pop(session, None)
            self._streams += 1
        self._count_gauges()
        return True

    def end_stream(self, session) -> None:
        with self._lock:
            self._streams -= 1
            self._waiting[session] = None
        self._count_gauges()

    def release(self, session, client: str, streaming: bool) -> None:
        with self._lock:
            if streaming:
                self._streams -= 1
            else:
                self._waiting.pop(session, None)
        self.clients.disconnect(client)
        self._count_gauges()
        self._count_across_servers(self.store.connection_closed)

    def _count_gauges(self) -> None:
        self.metrics.connections.set(self.active)
        self.metrics.streams.set(self._streams)

    def _count_across_servers(self, count) -> None:
        """Best effort and off the event loop: a slow or paused Redis must not stall the streams
        (one thread, so the counts keep their order)."""
        def best_effort():
            try:
                count()
            except Exception:
                pass

        self.store_pool.submit(best_effort)

    @property
    def active(self) -> int:
        return len(self._waiting) + self._streams

    @property
    def streams(self) -> int:
        return self._streams

    def full(self) -> bool:
        return self._streams >= self.config.max_connections


def recitation_settings(madd_monfasel: int = 4, madd_mottasel: int = 4, madd_aared: int = 4) -> RecitationSettings:
    """Validated settings from a client; ValueError names the bad value."""
    return RecitationSettings.from_madd(madd_monfasel, madd_mottasel, madd_aared)


def _model_name(model) -> str:
    return f"{model.name} {model.version}".strip()


def create_app(config: ServerConfig | None = None, *, model=None, store: SessionStore | None = None,
               live_model=None) -> FastAPI:
    config = config or ServerConfig()
    state = ServerState(config, model=model, store=store, live_model=live_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.draining = asyncio.Event()  # bound to the serving loop
        await asyncio.to_thread(state.load_model)
        yield
        state.draining.set()
        state.pool.shutdown(wait=False, cancel_futures=True)
        for pool in (state.final_pool, state.upload_pool, state.prepare_pool, state.start_pool):
            pool.shutdown()
        state.store_pool.shutdown(wait=True)  # the last connection counts (each call times out in 2 s)

    app = FastAPI(title="iqrah", version="1.0", lifespan=lifespan)
    app.state.iqrah = state
    app.include_router(audio_router(Path(config.audio_dir) if config.audio_dir else None))
    # outermost last: CORS answers preflights, then the key check and security headers, then the
    # request body limits
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes + FORM_OVERHEAD_BYTES,
                       timeout_s=config.body_timeout_s)
    app.add_middleware(AccessMiddleware, keys=config.api_keys)
    if config.allowed_origins:  # else no CORS headers: browsers let only the page's own origin read replies
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])

    @app.exception_handler(BodyRefused)
    async def body_refused(request, exc: BodyRefused):
        return refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc: RequestValidationError):
        """A missing or mistyped field: the same error shape as every other refusal."""
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"error": {"code": "bad_request", "message": problems}}, status_code=422)

    @app.get("/health")
    async def health():
        """200 while the server can serve (status ok, full or degraded); 503 when it cannot (no
        model, shutting down). ``full``: new streams are refused; ``store``: whether sessions
        can be saved and resumed."""
        fatal, reasons = [], []
        if state.model is None:
            fatal.append(f"model not loaded: {state.model_error or 'loading'}")
        if state.draining.is_set():
            fatal.append("shutting down")
        store = "memory"
        if config.redis_url:
            try:
                await asyncio.to_thread(state.store.ping)
                store = "ok"
            except Exception as exc:
                store = "unreachable"
                reasons.append(f"redis unreachable (streams go on, sessions cannot be resumed): {exc}")
        full = state.full()
        if full:
            reasons.append(f"full: {state.streams} of {config.max_connections} streams")
        body = {"status": "unavailable" if fatal else "degraded" if store == "unreachable" else "full" if full else "ok",
                "reasons": fatal + reasons, "full": full, "store": store, "connections": state.active,
                "streams": state.streams, "max_streams": config.max_connections}
        if fatal:
            return JSONResponse(body, status_code=503)
        return body | {"model": _model_name(state.model), "live_model": _model_name(state.live_model)}

    @app.get("/ready")
    async def ready():
        """Readiness, for a load balancer: 200 when a new stream would be accepted, else 503 (full,
        shutting down, no model). /health stays 200 while the server is alive."""
        reasons = []
        if state.model is None:
            reasons.append("model not loaded")
        if state.draining.is_set():
            reasons.append("shutting down")
        if state.full():
            reasons.append("full")
        if reasons:
            return JSONResponse({"ready": False, "reasons": reasons}, status_code=503)
        return {"ready": True}

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    static = Path(str(resources.files("iqrah.server") / "static"))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(static / "index.html")

    @app.get("/api/surahs")
    async def surahs():
        return [{"number": n, "name_ar": surah_name_ar(n), "name_en": SURAH_NAMES_EN[n - 1],
                 "ayahs": ayah_count(n)} for n in range(1, SURAH_COUNT + 1)]

    @app.get("/api/reference/{spec}")
    async def reference(spec: str, madd_monfasel: int = 4, madd_mottasel: int = 4, madd_aared: int = 4):
        try:
            settings = recitation_settings(madd_monfasel, madd_mottasel, madd_aared)
            ref = await asyncio.to_thread(build_reference, spec, settings)
        except UnknownAyahError as exc:
            return JSONResponse({"error": {"code": "unknown_ayah", "message": str(exc)}}, status_code=422)
        except ValueError as exc:
            return JSONResponse({"error": {"code": "bad_settings", "message": str(exc)}}, status_code=422)
        return JSONResponse(ref.to_dict())

    @app.get("/api/reciters")
    async def reciters(surah: int | None = None, ayah: int | None = None):
        """The reference reciters this server compares with (measured by its final model), those
        with a recording of ``surah:ayah`` when given; ``audio``: whether /audio plays them."""
        measured = await asyncio.to_thread(catalogue, state.cache, state.model_key()) if state.cache else {}
        audio_root = Path(config.audio_dir) if config.audio_dir else None
        found = []
        for key, item in sorted(measured.items()):
            ayahs = [tuple(x) for x in item["ayahs"]]
            if surah is not None and ayah is not None and (surah, ayah) not in ayahs:
                continue
            found.append({"name": item["name"], "slug": key, "ayahs": len(ayahs),
                          "audio": audio_root is not None and (audio_root / key).is_dir()})
        return {"model": state.model_key(), "reciters": found}

    @app.get("/api/reciters/{reciter}/{surah}/{ayah}")
    async def reciter_reference(reciter: str, surah: int, ayah: int):
        """What the server measured of a reference reciter's recording of one ayah: word and
        phoneme spans (s), the pitch contour (Hz, 20 ms frames), tempo, madd lengths in harakat."""
        try:
            found = await asyncio.to_thread(state.reciter, reciter, f"{surah}:{ayah}")
        except (UnknownAyahError, UnknownReciterError) as exc:
            return JSONResponse({"error": {"code": "not_found", "message": str(exc)}}, status_code=404)
        entry = {k: v for k, v in found[1].items() if k != "audio"}  # a path on this server: not for clients
        path = find_audio(Path(config.audio_dir), slug(reciter), surah, ayah) if config.audio_dir else None
        return entry | {"audio_url": f"/audio/{slug(reciter)}/{surah}/{ayah}" if path else None}

    @app.post("/api/analyze")
    async def api_analyze(request: Request, file: UploadFile = File(...), ayah: str = Form(...),
                          madd_monfasel: int = Form(4), madd_mottasel: int = Form(4), madd_aared: int = Form(4),
                          reciter: str | None = Form(None)):
        def refuse(status, code, message):
            state.metrics.analyses.labels(code).inc()
            return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

        if state.model is None:
            return refuse(503, "model_unavailable", state.model_error or "the model is loading")
        client = client_id(key_from(request.headers), config.api_keys, request.client.host if request.client else None)
        limited = state.clients.upload(client)
        if limited is not None:
            return refuse(429, p.RATE_LIMITED, limited)
        data = await file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            return refuse(413, "file_too_large", f"uploads are limited to {config.max_upload_bytes // 2**20} MB")
        try:
            settings = replace(state.analyze_settings,
                               recitation=recitation_settings(madd_monfasel, madd_mottasel, madd_aared))
        except ValueError as exc:
            return refuse(422, "bad_settings", str(exc))
        try:
            reference = await asyncio.to_thread(state.reciter, reciter, ayah)
            report = await state.run_upload(client, partial(analyze, reciter=reference), data, ayah, settings,
                                            state.model)
        except UnknownAyahError as exc:
            return refuse(422, "unknown_ayah", str(exc))
        except AudioError as exc:
            return refuse(422, p.NO_SPEECH if isinstance(exc, NoSpeechError) else p.BAD_AUDIO, str(exc))
        except UnknownReciterError as exc:  # a reference reciter this server has not measured
            return refuse(422, p.UNKNOWN_RECITER, str(exc))
        state.metrics.analyses.labels("ok").inc()
        state.metrics.observe_stages(report.timings_ms)
        return JSONResponse(report.model_dump(mode="json"))

    @app.websocket("/ws/stream")
    async def ws_stream(websocket: WebSocket):
        if state.model is None:
            await websocket.accept()
            await websocket.send_json({"type": "error", "data": {"code": "model_unavailable",
                                       "message": state.model_error or "the model is loading"}})
            await websocket.close(1013, reason="model unavailable")
            return
        await StreamSession(websocket, state).run()

    return app
