"""Crash recovery's writes, over any :class:`~openft.store.base.Store`: idempotent events and checkpoints.

Every write here is a worker's, and happens only while that worker still holds the job (the store checks
it in the write's own transaction): a worker whose job was taken over, or cancelled, writes nothing more.

A worker that resumes a job reads the training process's events file again from its start, and a
worker may die between writing an event and remembering it did. So every event that comes from an
event line carries a deterministic id derived from the job and a key of the line; writing it a
second time is a no-op, and the job's events never show a line twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from openft.store.base import NewEvent, Store
from openft.store.rows import CheckpointRow


def event_id_for(job_id: str, key: str) -> str:
    """The id of the event that line ``key`` of job ``job_id`` becomes (same inputs, same id)."""
    return "ftevent-" + hashlib.sha256(f"{job_id}\0{key}".encode()).hexdigest()[:32]


def append_event_once(
    store: Store,
    job_id: str,
    key: str,
    message: str,
    *,
    held_by: str,
    statuses: Iterable[str],
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> bool:
    """Append the event for ``key`` unless the job already has it, and only while worker ``held_by``
    holds the job in one of ``statuses``; returns whether it was written."""
    event = NewEvent(message, level=level, type=type, data=data)
    return store.add_event_once(
        job_id, event, event_id=event_id_for(job_id, key), held_by=held_by, statuses=tuple(statuses)
    )


def add_checkpoint_once(store: Store, row: CheckpointRow, *, held_by: str, statuses: Iterable[str]) -> bool:
    """:meth:`Store.add_checkpoint_once <openft.store.base.Store.add_checkpoint_once>`."""
    return store.add_checkpoint_once(row, held_by=held_by, statuses=tuple(statuses))


def delete_checkpoints(
    store: Store, job_id: str, *, held_by: str, statuses: Iterable[str], step: int | None = None
) -> bool:
    """:meth:`Store.delete_checkpoints <openft.store.base.Store.delete_checkpoints>`."""
    return store.delete_checkpoints(job_id, held_by=held_by, statuses=tuple(statuses), step=step)
