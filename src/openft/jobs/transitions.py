"""The one writer of a job's status.

Every status change (the API's cancel, pause and resume; a worker's validation, start, success,
failure and re-queue; the reaper's take-backs) goes through :func:`transition`. It checks the move
against the table in ``jobs/status.py`` (a move the table forbids is a bug in the caller and raises
:class:`IllegalTransition`), then has the store apply it in one transaction (``store/job_writes.py``):
a compare-and-set on the expected statuses and, for a worker's move, the worker that must still
hold the job; the new status and its fields; its events; and, for a terminal status, the webhook
outbox rows. It returns whether the move happened, so of two racing callers exactly one wins and
only the winner's events and webhooks exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from openft import ids
from openft.jobs import status as st
from openft.jobs.webhooks import EVENT_TYPES
from openft.store import Store
from openft.store.job_writes import JobChange, NewEvent, WebhookEvent

__all__ = ["IllegalTransition", "NewEvent", "fail", "release", "transition"]


class IllegalTransition(RuntimeError):
    """A status move the table in ``jobs/status.py`` forbids: a programming error, never a user's."""


def _statuses(expect: str | Iterable[str]) -> tuple[str, ...]:
    return (expect,) if isinstance(expect, str) else tuple(expect)


def _events(events: Sequence[str | NewEvent]) -> tuple[NewEvent, ...]:
    return tuple(NewEvent(e) if isinstance(e, str) else e for e in events)


def webhook_event(job_id: str, status: str) -> WebhookEvent | None:
    """The ``fine_tuning.job.*`` event of a job that reaches ``status`` (None for a non-terminal one).

    Its payload is OpenAI's ``WebhookFineTuningJob*`` event, the exact body that is signed and sent.
    """
    event_type = EVENT_TYPES.get(status)
    if event_type is None:
        return None
    now = int(time.time())
    event_id = f"evt_{ids.new_model_short_id()}{ids.new_model_short_id()}{ids.new_model_short_id()}"
    payload = {"id": event_id, "object": "event", "type": event_type, "created_at": now, "data": {"id": job_id}}
    return WebhookEvent(event_type, event_id, json.dumps(payload, separators=(",", ":")))


def transition(
    store: Store,
    job_id: str,
    target: str,
    *,
    expect: str | Iterable[str],
    worker: str | None = None,
    stale_before: float | None = None,
    events: Sequence[str | NewEvent] = (),
    **values: Any,
) -> bool:
    """Move job ``job_id`` from one of ``expect`` to ``target``; returns whether it moved.

    ``worker``: the worker that must hold the job (a worker's move); ``stale_before``: its heartbeat must
    be older than this (taking a job from a silent worker). ``values`` are the job's other fields to set
    with the move; ``events`` are appended with it, and a terminal ``target`` queues its webhook event.

    Raises:
        IllegalTransition: a move from one of ``expect`` to ``target`` is not in the status table.
    """
    sources = _statuses(expect)
    forbidden = [source for source in sources if not st.can_transition(source, target)]
    if not sources or forbidden:
        raise IllegalTransition(f"job {job_id}: no move from {forbidden or 'nowhere'} to {target!r}")
    change = JobChange(
        expect_status=sources,
        worker_id=worker,
        stale_before=stale_before,
        status=target,
        values=values,
        events=_events(events),
        webhook=webhook_event(job_id, target),
    )
    return store.change_job(job_id, change) is not None


def fail(
    store: Store,
    job_id: str,
    error: dict[str, Any],
    *,
    expect: str | Iterable[str],
    worker: str | None = None,
    stale_before: float | None = None,
) -> bool:
    """Fail the job with ``error`` (``{code, message, param}``); its message becomes an error event."""
    return transition(
        store,
        job_id,
        st.FAILED,
        expect=expect,
        worker=worker,
        stale_before=stale_before,
        events=[NewEvent(error["message"], level="error")],
        error=error,
        finished_at=int(time.time()),
        estimated_finish=None,
    )


def release(
    store: Store,
    job_id: str,
    *,
    expect: str | Iterable[str],
    worker: str,
    stale_before: float | None = None,
    events: Sequence[str | NewEvent] = (),
    **values: Any,
) -> bool:
    """Free a job ``worker`` holds, its status unchanged (with ``values`` and ``events``, in one transaction)."""
    change = JobChange(
        expect_status=_statuses(expect),
        worker_id=worker,
        stale_before=stale_before,
        values={**values, "worker_id": None},
        events=_events(events),
    )
    return store.change_job(job_id, change) is not None
