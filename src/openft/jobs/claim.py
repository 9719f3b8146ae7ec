"""A worker's claim on a job, kept alive by heartbeats for as long as the worker works on it.

A claim heartbeats from its own thread rather than from the steps themselves, because a worker's
long steps are of two kinds: some it can interrupt at will (validating a file line by line, copying
it in chunks) and some it cannot (a blob download or upload, starting a training process), and a
worker may hold two jobs at once (one training while its loop validates another's files). A thread
beats for each held job whatever the loop is doing; the interruptible steps call :meth:`Claim.progress`
as they go, which aborts them (:class:`ClaimLost`) once a heartbeat has found the claim gone. Every
write a worker makes for the job is also conditional on still holding it (``jobs/transitions.py``,
``store/recovery.py``), so even a step that cannot be interrupted writes nothing once the claim is lost.
A heartbeat finds the claim gone when another worker holds the job, or the job is no longer active
(cancelled, failed). The thread dies with the worker process, so a dead worker's jobs go stale as before.
"""

from __future__ import annotations

import logging
import threading
import time

from openft.jobs import status as st
from openft.store import Store

log = logging.getLogger(__name__)

MAX_HEARTBEAT_EVERY = 2.0
YIELD_EVERY = 0.005
"""Seconds between the moments a long step leaves the interpreter to the worker's other threads."""


def heartbeat_every(timeout_seconds: float) -> float:
    """Seconds between heartbeats: at most every 2 s, and at least four per timeout, so a live
    worker's heartbeat is never close to the age at which its job is taken from it."""
    return min(MAX_HEARTBEAT_EVERY, timeout_seconds / 4)


class ClaimLost(Exception):
    """The worker no longer holds the job (taken over, or cancelled): its step stops here."""


class Claim:
    """The hold worker ``worker_id`` has on job ``job_id`` (claimed already), heartbeating every ``every``
    seconds from :meth:`start` until :meth:`stop` or the first heartbeat that finds it gone."""

    def __init__(self, store: Store, job_id: str, worker_id: str, *, every: float):
        self.store = store
        self.job_id = job_id
        self.worker_id = worker_id
        self.every = every
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_yield = 0.0

    def start(self) -> Claim:
        """Start heartbeating (once; starting again is a no-op)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"openft-heartbeat-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop heartbeating (the job is released, finished, or someone else's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Claim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise :class:`ClaimLost` if a heartbeat found the claim gone (cheap: no database call)."""
        if self._lost.is_set():
            raise ClaimLost(f"job {self.job_id} is no longer held by worker {self.worker_id}")

    def progress(self) -> None:
        """The hook a long step calls as it goes: :meth:`check`, and every few milliseconds a moment for
        the worker's other threads.

        A thread that runs Python code without pause can keep the interpreter lock from the others for
        long stretches (up to a second at a time, measured while validating a file on two busy cores);
        a heartbeat that waits that long can miss a short timeout. ``sleep(0)`` hands the lock over.
        """
        self.check()
        now = time.monotonic()
        if now >= self._next_yield:
            self._next_yield = now + YIELD_EVERY
            time.sleep(0)

    def beat(self) -> bool:
        """Heartbeat now; False (and the claim is lost for good) when the job is no longer this worker's."""
        held = self.store.update_job(
            self.job_id, expect_status=st.ACTIVE, expect_worker=self.worker_id, heartbeat_at=time.time()
        )
        if not held:
            self._lost.set()
        return held

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.beat():
                    log.info("job %s: no longer held by this worker; its work stops", self.job_id)
                    return
            except Exception:  # a database hiccup: beat again next time; the job goes stale if it lasts
                log.exception("job %s: heartbeat failed", self.job_id)
