"""Time spent per named stage of a request, for reports and metrics."""

from __future__ import annotations

import time
from contextlib import contextmanager


class Stopwatch:
    """Milliseconds spent per named stage (a stage entered twice adds up)."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round(self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000, 1)
