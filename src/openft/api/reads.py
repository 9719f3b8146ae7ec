"""The few threads that run the API's database reads, instead of FastAPI's thread pool of 40.

A plain ``def`` route runs in anyio's default thread pool, up to 40 threads at once. Reads are short
(an index search in SQLite takes ~0.1 ms) and the Python around them holds the GIL, so under load 16
threads contend for one GIL: each waits up to a switch interval (5 ms) to run again, and the
latency tail grows with the thread count. Measured on a 2-core Xeon, 16 clients listing 20 jobs on
a store of 100k jobs, profiled with py-spy: p50/p99 31/125 ms with the 40-thread pool, 31/121 ms
with 4 threads, 26/40 ms with 2. Writes (create, cancel, uploads) stay in the default pool: they may
wait on a database lock, which must not hold up reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


class ReadThreads:
    """Runs blocking read functions on at most ``size`` threads, first come first served."""

    def __init__(self, size: int):
        self.size = size
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._limiter is None:  # created inside the running event loop, as anyio expects
            self._limiter = anyio.CapacityLimiter(self.size)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)
