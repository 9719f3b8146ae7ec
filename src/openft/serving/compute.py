"""The one thread of a process that runs every engine's torch work when torch has several threads.

Each thread that runs torch's parallel ops gets an OpenMP team of its own, kept while the thread
lives, and a team beside the one at work slows it: with two torch threads, a SmolLM2 decode step took
65 ms instead of 32 while another thread's team existed (``benchmarks/README.md``, decode speed). One
engine thread per loaded base model would keep one team each, so with several base models every
engine would run at that pace. Their steps run here instead, one after another: with torch on every
core, two steps at once would only share the cores.

With one torch thread there is no team, and engines keep stepping on their own threads, side by side
on the machine's cores. Loading a model is not run here (it would stall every engine for seconds)
but on a thread that ends with it (``on_a_thread_of_its_own``), which takes its team with it: a load
on a request's long-lived thread used to leave one behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_thread: threading.Thread | None = None
_guard = threading.Lock()


def run(work: Callable[[], T]) -> T:
    """``work()`` on the compute thread when torch runs several threads, else on the caller's; its result
    or its exception, on the caller's thread."""
    import torch

    if torch.get_num_threads() <= 1 or threading.current_thread() is _thread:
        return work()
    return _compute_executor().submit(work).result()


def on_a_thread_of_its_own(work: Callable[[], T], *, name: str) -> T:
    """``work()`` on a new thread named ``name``, which has ended when this returns; its result or its
    exception, on the caller's thread."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _compute_executor() -> ThreadPoolExecutor:
    global _executor
    with _guard:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openft-compute")
            _executor.submit(_remember_thread).result()
        return _executor


def _remember_thread() -> None:
    global _thread
    _thread = threading.current_thread()
