"""Where the inference routes wait: their own threads, and never for a client that has gone.

* Generation, and the model loading before it, blocks a thread for seconds. In anyio's default thread
  pool (40 threads, FastAPI's ``run_in_threadpool``) that would be a thread job creation, cancellation,
  uploads and API-key lookups also need, so a busy model would delay a cancel. The inference routes
  run every blocking call on ``GenerationThreads`` instead: at most ``serving_generation_threads`` at
  once, on their own limiter; requests beyond it wait on the event loop, holding no thread.
* A request watches its ASGI receive channel while it waits for its answer, or for its stream to
  start (``run_until_disconnect``): on ``http.disconnect`` its cancel event is set and the engine drops
  its rows at the next token; a request still waiting for a thread never starts. (A stream that has
  started stops on its own: see ``inference_streams``.)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from starlette.types import Receive

P = ParamSpec("P")
T = TypeVar("T")

_POLL_S = 0.05
"""Pause between receive calls that brought something other than a disconnect (a server that hands
out an empty body message again must not make the watch spin)."""


class GenerationThreads:
    """Runs the inference routes' blocking calls on at most ``size`` threads, first come first served."""

    def __init__(self, size: int):
        self.size = size
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def busy(self) -> int:
        """Threads running a call now."""
        return 0 if self._limiter is None else int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Calls waiting for a thread now."""
        return 0 if self._limiter is None else self._limiter.statistics().tasks_waiting

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on a generation thread (waiting for a free one without holding any)."""
        if self._limiter is None:  # created inside the running event loop, as anyio expects
            self._limiter = anyio.CapacityLimiter(self.size)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    async def run_until_disconnect(
        self, receive: Receive, fn: Callable[..., T], cancel: threading.Event | None = None
    ) -> T | None:
        """``fn(cancel=cancel)`` on a generation thread; None if the client disconnected first.

        ``receive`` is the request's ASGI receive channel, its body already read: the next message it
        brings is ``http.disconnect``. Then ``cancel`` (a new event unless given) is set, so ``fn`` must
        return soon after it is.
        """
        cancel = cancel if cancel is not None else threading.Event()
        outcome: list[T] = []
        failure: Exception | None = None
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    await anyio.sleep(_POLL_S)
                cancel.set()
                group.cancel_scope.cancel()  # stops a wait for a thread; a running one sees ``cancel``

            group.start_soon(watch)
            try:
                outcome.append(await self.run(fn, cancel=cancel))
            except Exception as exc:  # raised below, outside the task group, as itself
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return None if cancel.is_set() or not outcome else outcome[0]
