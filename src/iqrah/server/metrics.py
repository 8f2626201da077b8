"""Prometheus metrics of one server (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector,
                               ProcessCollector, generate_latest)

STAGES = ("decode", "vad", "pitch", "acoustic", "align", "assess", "report", "send")
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self, model: str = "", live_model: str = ""):
        self.registry = CollectorRegistry()
        # the process's CPU, memory and open files, and the Python it runs on
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.build = Info("iqrah_build", "Version of iqrah and of the models this server runs", registry=self.registry)
        self.set_build(model, live_model)
        self.stage = Histogram("iqrah_stage_seconds", "Time spent per pipeline stage", ["stage"],
                               buckets=BUCKETS_S, registry=self.registry)
        self.chunk_latency = Histogram("iqrah_chunk_latency_seconds",
                                       "From an audio chunk's arrival to the events it produced being sent",
                                       buckets=BUCKETS_S, registry=self.registry)
        self.connections = Gauge("iqrah_active_connections", "Open /ws/stream connections on this server",
                                 registry=self.registry)
        self.streams = Gauge("iqrah_active_streams", "Connections with a stream started (limited by "
                             "max_connections)", registry=self.registry)
        self.step = Histogram("iqrah_stream_step_seconds", "New audio per streaming step (grows with load)",
                              buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0), registry=self.registry)
        self.batch = Histogram("iqrah_model_batch_size", "Acoustic model calls run together in one batch",
                               buckets=(1, 2, 3, 4, 6, 8), registry=self.registry)
        self.messages = Counter("iqrah_messages_total", "Messages by direction and type", ["direction", "type"],
                                registry=self.registry)
        self.errors = Counter("iqrah_errors_total", "Error messages sent, by code", ["code"],
                              registry=self.registry)
        self.analyses = Counter("iqrah_http_analyses_total", "POST /api/analyze requests by outcome",
                                ["outcome"], registry=self.registry)

        self.cache = Counter("iqrah_cache_requests_total", "Reference cache gets by result", ["result"],
                             registry=self.registry)
        self.cache_latency = Histogram("iqrah_cache_get_seconds", "Time of one reference cache get",
                                       buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
                                       registry=self.registry)

    def set_build(self, model: str, live_model: str) -> None:
        from .. import __version__

        self.build.info({"version": __version__, "model": model or "-", "live_model": live_model or "-"})

    def observe_cache_get(self, hit: bool, seconds: float) -> None:
        """A reference cache get (``Cache.on_get``)."""
        self.cache.labels("hit" if hit else "miss").inc()
        self.cache_latency.observe(seconds)

    def observe_stages(self, stage_ms: dict[str, float]) -> None:
        for name, ms in stage_ms.items():
            if name in STAGES:
                self.stage.labels(name).observe(ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
