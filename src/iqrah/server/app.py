"""The FastAPI application: ``/ws/stream``, ``POST /api/analyze``, ``/health``, ``/metrics``.

A thin adapter: the work is done by ``iqrah.analyze`` and ``iqrah.stream``; this module holds
the shared state of one server process (model, thread pool, session store, metrics, limits).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from ..acoustic.batching import BatchingModel
from ..analyze import AnalyzeSettings, analyze
from ..audio import AudioError
from ..config import RecitationSettings
from ..quran import UnknownAyahError, build_reference
from ..quran.names import SURAH_NAMES_EN
from ..quran.text import SURAH_COUNT, ayah_count, surah_name_ar
from .metrics import Metrics
from .sessions import SessionStore, make_store
from .ws import StreamSession

STEP_S = 0.25  # new audio per stream step on an idle server
MAX_STEP_S = 2.0  # ... and on a busy one
TARGET_BUSY = 0.6  # the share of time the inference threads may work before steps grow
MAX_BATCH = 4  # model calls run together at most (a 2 s window: no gain past 4 on a CPU)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class ServerConfig:
    """Limits and choices of one server process; defaults come from IQRAH_* environment variables
    so that ``uvicorn --workers N`` processes share them."""

    model: str | None = field(default_factory=lambda: os.environ.get("IQRAH_MODEL") or None)
    # the model of live verdicts (None: the bundled live model beside the bundled default, else
    # ``model``); ``model`` hears uploads and the final report of a stream
    live_model: str | None = field(default_factory=lambda: os.environ.get("IQRAH_LIVE_MODEL") or None)
    max_connections: int = field(default_factory=lambda: _env_int("IQRAH_MAX_CONNECTIONS", 100))
    max_session_bytes: int = 50 * 2**20
    max_upload_bytes: int = 25 * 2**20
    ping_interval_s: float = 10.0
    inference_threads: int = 2
    redis_url: str | None = field(default_factory=lambda: os.environ.get("IQRAH_REDIS_URL") or None)


class ServerState:
    def __init__(self, config: ServerConfig, model=None, store: SessionStore | None = None, live_model=None):
        self.config = config
        self.metrics = Metrics()
        self.model = None  # uploads and final reports
        self.live_model = None  # the live steps of a stream
        self.model_error: str | None = None
        self.store = store or make_store(config.redis_url)
        self.analyze_settings = AnalyzeSettings()
        # parallelism comes from the pool (and uvicorn workers): numpy's BLAS must not start
        # threads of its own in every pool thread, they would fight over the cores
        threadpool_limits(1)
        self.pool = ThreadPoolExecutor(max_workers=config.inference_threads, thread_name_prefix="iqrah-infer")
        if model is not None:
            self._use_models(model, live_model or model)
        # whole-recording reports (the final of a stream, uploads) take 0.1-1 s each: they have
        # a thread of their own, so live words do not queue behind them
        self.report_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iqrah-report")
        self.store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iqrah-store")
        self.draining = asyncio.Event()
        self._busy_s = 0.0  # seconds the inference threads worked since _measured_at
        self._measured_at = time.perf_counter()
        self._step_s = STEP_S
        self._active = 0
        self._lock = threading.Lock()

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
        if not live_model.batches_exactly():
            self.model, self.live_model = model, live_model
            return
        self.pool = ThreadPoolExecutor(max_workers=self.config.inference_threads * MAX_BATCH,
                                       thread_name_prefix="iqrah-infer")
        # the report thread's whole recordings count as a runner too, as without batching
        batching = BatchingModel(live_model, runners=self.config.inference_threads + 1, max_batch=MAX_BATCH,
                                 on_batch=self.metrics.batch.observe)
        self.model, self.live_model = (batching if model is live_model else model), batching

    async def run_report(self, fn, *args):
        """Run a whole-recording analysis in the report pool."""
        return await asyncio.get_running_loop().run_in_executor(self.report_pool, partial(fn, *args))

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

    def admit(self) -> bool:
        with self._lock:
            if self.draining.is_set() or self._active >= self.config.max_connections:
                return False
            self._active += 1
        self.metrics.connections.set(self._active)
        self._count_across_servers(self.store.connection_opened)
        return True

    def release(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)
        self.metrics.connections.set(self._active)
        self._count_across_servers(self.store.connection_closed)

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
        return self._active


def recitation_settings(madd_monfasel: int = 4, madd_mottasel: int = 4, madd_aared: int = 4) -> RecitationSettings:
    """Validated settings from a client; ValueError names the bad value."""
    settings = RecitationSettings(madd_monfasel=madd_monfasel, madd_mottasel=madd_mottasel,
                                  madd_mottasel_waqf=madd_mottasel, madd_aared=madd_aared)
    try:
        settings.to_moshaf()
    except ValidationError as exc:
        raise ValueError("invalid recitation settings: " + "; ".join(
            f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    return settings


def _model_name(model) -> str:
    card = getattr(model, "card", {})
    return f"{card['name']} {card.get('version', '')}".strip() if "name" in card else type(model).__name__


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
        state.report_pool.shutdown(wait=False, cancel_futures=True)
        state.store_pool.shutdown(wait=True)  # the last connection counts (each call times out in 2 s)

    app = FastAPI(title="iqrah", version="1.0", lifespan=lifespan)
    app.state.iqrah = state

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc: RequestValidationError):
        """A missing or mistyped field: the same error shape as every other refusal."""
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:]) or 'request'}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"error": {"code": "bad_request", "message": problems}}, status_code=422)

    @app.get("/health")
    async def health():
        problems = []
        if state.model is None:
            problems.append(f"model not loaded: {state.model_error or 'loading'}")
        if config.redis_url:
            try:
                await asyncio.to_thread(state.store.ping)
            except Exception as exc:
                problems.append(f"redis unreachable: {exc}")
        if state.draining.is_set():
            problems.append("shutting down")
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
        return {"status": "ok", "connections": state.active, "model": _model_name(state.model),
                "live_model": _model_name(state.live_model)}

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

    @app.post("/api/analyze")
    async def api_analyze(file: UploadFile = File(...), ayah: str = Form(...), madd_monfasel: int = Form(4),
                          madd_mottasel: int = Form(4), madd_aared: int = Form(4)):
        def refuse(status, code, message):
            state.metrics.analyses.labels(code).inc()
            return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

        if state.model is None:
            return refuse(503, "model_unavailable", state.model_error or "the model is loading")
        data = await file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            return refuse(413, "file_too_large", f"uploads are limited to {config.max_upload_bytes // 2**20} MB")
        try:
            settings = replace(state.analyze_settings,
                               recitation=recitation_settings(madd_monfasel, madd_mottasel, madd_aared))
        except ValueError as exc:
            return refuse(422, "bad_settings", str(exc))
        try:
            report = await state.run_report(analyze, data, ayah, settings, state.model)
        except UnknownAyahError as exc:
            return refuse(422, "unknown_ayah", str(exc))
        except AudioError as exc:
            return refuse(422, "bad_audio", str(exc))
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
