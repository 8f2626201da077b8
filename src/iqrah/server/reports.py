"""Thread pools shared fairly between clients, for work that takes seconds: whole-recording reports
(a stream's final, an upload) and streams' references (seconds for a long range such as 2:2-286).

Run first come, first served on one thread, three long uploads delayed a live stream's final
five-fold. A FairPool runs one job of a client at a time; the others wait their turn, taken
round robin between clients. A pool may let a client use threads no other client is waiting
for (``per_client``): many streams behind one address (a classroom, a benchmark) had their
finals run one by one while a report thread sat idle. The server keeps uploads in a pool of
their own whose threads run at a lower CPU priority (Linux ``nice``), so a final never queues
behind an upload and live work keeps the cores while uploads wait.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter, OrderedDict, deque
from concurrent.futures import Future
from functools import partial


class FairPool:
    def __init__(self, threads: int, thread_name_prefix: str, nice: int = 0, per_client: int = 1):
        """``per_client``: jobs of one client that may run at once; beyond the first, only on a
        thread that no other client's job is waiting for."""
        self.threads, self.nice, self.per_client = max(1, threads), nice, max(1, per_client)
        self._queues: OrderedDict[str, deque] = OrderedDict()  # client -> its jobs waiting, in turn order
        self._running: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._work, name=f"{thread_name_prefix}_{i}", daemon=True)
                         for i in range(self.threads)]
        for worker in self._workers:
            worker.start()

    async def run(self, client: str, fn, *args):
        """Run ``fn(*args)`` on a thread of the pool when its turn comes; its result."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            self._queues.setdefault(client, deque()).append((future, partial(fn, *args)))
            self._cond.notify()
        return await asyncio.wrap_future(future)

    def _next(self):
        """(client, job) of the next job that may run now, or None (under the lock): the first
        client in turn with nothing running, else the first below ``per_client``."""
        for limit in range(1, self.per_client + 1):
            client = next((c for c in self._queues if self._running[c] < limit), None)
            if client is None:
                continue
            job = self._queues[client].popleft()
            if self._queues[client]:
                self._queues.move_to_end(client)  # round robin: this client's next job waits its turn
            else:
                del self._queues[client]
            return client, job
        return None

    def _work(self) -> None:
        if self.nice > 0:
            _lower_priority(self.nice)
        while True:
            with self._cond:
                while (taken := self._next()) is None and not self._closed:
                    self._cond.wait()
                if taken is None:
                    return
                client, (future, job) = taken
                self._running[client] += 1
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(job())
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                with self._cond:
                    self._running[client] -= 1
                    if not self._running[client]:
                        del self._running[client]
                    self._cond.notify_all()

    def shutdown(self) -> None:
        """Cancel what waits; the jobs running finish on their own."""
        with self._cond:
            self._closed = True
            for queue in self._queues.values():
                for future, _ in queue:
                    future.cancel()
            self._queues.clear()
            self._cond.notify_all()


def _lower_priority(nice: int) -> None:
    """Lower the CPU priority of the calling thread (Linux: a thread is a task with its own nice
    value); elsewhere nothing happens."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    except (OSError, AttributeError):
        pass
