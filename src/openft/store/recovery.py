"""Persistence for crash recovery: idempotent event and checkpoint writes, and jobs held by workers.

Every write here is a worker's, and happens only while that worker still holds the job (see
``store/job_writes.py: hold``): a worker whose job was taken over, or cancelled, writes nothing more.

A worker that resumes a job reads the training process's events file again from its start, and a
worker may die between writing an event and remembering it did. So every event that comes from an
event line carries a deterministic id derived from the job and a key of the line; writing it a
second time is a no-op, and the job's events never show a line twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.exc import IntegrityError

from openft.store import schema as s
from openft.store.database import Store
from openft.store.job_writes import NewEvent, hold, insert_event
from openft.store.rows import CheckpointRow, JobRow


def event_id_for(job_id: str, key: str) -> str:
    """The id of the event that line ``key`` of job ``job_id`` becomes (same inputs, same id)."""
    return "ftevent-" + hashlib.sha256(f"{job_id}\0{key}".encode()).hexdigest()[:32]


def event_ids(store: Store, job_id: str) -> set[str]:
    """Ids of every event the job already has (loaded once per attempt, so re-reading costs no writes)."""
    with store.engine.connect() as conn:
        return set(conn.execute(select(s.job_events.c.id).where(s.job_events.c.job_id == job_id)).scalars())


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
    with store.engine.begin() as conn:
        if not hold(conn, job_id, held_by, statuses):
            return False
        return insert_event(conn, job_id, event, event_id=event_id_for(job_id, key), now=time.time())


def add_checkpoint_once(store: Store, row: CheckpointRow, *, held_by: str, statuses: Iterable[str]) -> bool:
    """Record a checkpoint unless the job already has one at that step, and only while worker ``held_by``
    holds the job in one of ``statuses``; returns whether it was written."""
    exists = select(s.job_checkpoints.c.id).where(
        and_(s.job_checkpoints.c.job_id == row.job_id, s.job_checkpoints.c.step_number == row.step_number)
    )
    try:
        with store.engine.begin() as conn:
            if not hold(conn, row.job_id, held_by, statuses) or conn.execute(exists).first() is not None:
                return False
            conn.execute(insert(s.job_checkpoints).values(**dataclasses.asdict(row)))
    except IntegrityError:
        return False
    return True


def delete_checkpoints(
    store: Store, job_id: str, *, held_by: str, statuses: Iterable[str], step: int | None = None
) -> bool:
    """Delete the job's checkpoint at ``step`` (all of them when None), only while worker ``held_by``
    holds the job in one of ``statuses``; returns whether it still did."""
    query = delete(s.job_checkpoints).where(s.job_checkpoints.c.job_id == job_id)
    if step is not None:
        query = query.where(s.job_checkpoints.c.step_number == step)
    with store.engine.begin() as conn:
        if not hold(conn, job_id, held_by, statuses):
            return False
        conn.execute(query)
    return True


def held_jobs(store: Store, statuses: Iterable[str]) -> list[JobRow]:
    """Jobs in ``statuses`` that some worker holds, whatever the age of its heartbeat."""
    query = select(s.jobs).where(s.jobs.c.status.in_(list(statuses)), s.jobs.c.worker_id.is_not(None))
    names = {f.name for f in dataclasses.fields(JobRow)}
    with store.engine.connect() as conn:
        return [JobRow(**{k: v for k, v in r._mapping.items() if k in names}) for r in conn.execute(query).all()]
