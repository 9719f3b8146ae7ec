"""The only SQL that changes a job's ``status``, and the writes that count only while a worker holds a job.

:func:`change_job` is one transaction: a compare-and-set ``UPDATE ... RETURNING`` on the job (its
expected statuses, the worker expected to hold it, how stale that worker's heartbeat must be), then
the job's new events, then the webhook outbox rows of a terminal status. Nothing is written unless the
compare-and-set matched, and nothing of it survives if a later part fails. The status table lives in
``jobs/status.py``; ``jobs/transitions.py`` checks each move against it before it reaches here.

:func:`hold` locks the job's row for a write that a worker may make only while the job is still its
own (an event line, a checkpoint): on PostgreSQL the row lock orders the write before or after any
concurrent takeover, and SQLite takes its single write lock at that first statement.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from openft import ids
from openft.store import schema as s
from openft.store.base import JobChange, NewEvent, WebhookEvent
from openft.store.rows import CheckpointRow, JobRow
from openft.store.statements import CHECKPOINTS, JOBS
from openft.store.webhooks import queue_event_deliveries

__all__ = [
    "JobChange",
    "NewEvent",
    "WebhookEvent",
    "add_checkpoint_once",
    "add_event_once",
    "change_job",
    "claim_job",
    "delete_checkpoints",
    "hold",
    "insert_event",
]


def _conditions(job_id: str, change: JobChange) -> list[ColumnElement[bool]]:
    where = [s.jobs.c.id == job_id, s.jobs.c.status.in_(change.expect_status)]
    if change.worker_id is not None:
        where.append(s.jobs.c.worker_id == change.worker_id)
    if change.stale_before is not None:
        where.append(or_(s.jobs.c.heartbeat_at.is_(None), s.jobs.c.heartbeat_at < change.stale_before))
    return where


def change_job(engine: Engine, job_id: str, change: JobChange) -> JobRow | None:
    """Apply ``change`` in one transaction; the job as written, or None when its conditions did not hold."""
    values = dict(change.values)
    if "status" in values:
        raise TypeError("a job's status is JobChange.status, not one of its values")
    if change.status is not None:
        values["status"] = change.status
    if not values:  # nothing to set: still lock the row, so the events follow the check
        values["worker_id"] = s.jobs.c.worker_id
    query = update(s.jobs).where(*_conditions(job_id, change)).values(**values).returning(*JOBS.columns)
    with engine.begin() as conn:
        row = conn.execute(query).first()
        if row is None:
            return None
        job = JOBS.one(row)
        now = time.time()
        for event in change.events:
            insert_event(conn, job_id, event, event_id=ids.new_event_id(), now=now)
        if change.webhook is not None:
            queue_event_deliveries(
                conn,
                organization_id=job.organization_id,
                event_type=change.webhook.event_type,
                event_id=change.webhook.event_id,
                payload=change.webhook.payload,
                now=now,
            )
    return job


def claim_job(
    engine: Engine,
    worker_id: str,
    status: str,
    *,
    to_status: str | None,
    now: float,
    stale_before: float | None,
) -> JobRow | None:
    """Take the oldest job in ``status`` that no live worker holds (see ``Store.claim_next_job``)."""
    free: ColumnElement[bool] = s.jobs.c.worker_id.is_(None)
    if stale_before is not None:
        free = or_(free, s.jobs.c.heartbeat_at < stale_before)
    candidate = select(s.jobs.c.id).where(s.jobs.c.status == status, free).order_by(s.jobs.c.seq).limit(1)
    if engine.dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    values: dict[str, Any] = {"worker_id": worker_id, "heartbeat_at": now}
    if to_status is not None:
        values["status"] = to_status
    query = (
        update(s.jobs)
        .where(s.jobs.c.id == candidate.scalar_subquery(), s.jobs.c.status == status, free)
        .values(**values)
        .returning(*JOBS.columns)
    )
    with engine.begin() as conn:
        row = conn.execute(query).first()
    return JOBS.maybe(row)


def hold(conn: Connection, job_id: str, worker_id: str, statuses: Iterable[str]) -> bool:
    """Lock the job's row if ``worker_id`` still holds it in one of ``statuses``; whether it does.

    The first statement of a worker's conditional write: the rest of the transaction runs only if
    this returns True, and no takeover can commit in between.
    """
    query = (
        update(s.jobs)
        .where(s.jobs.c.id == job_id, s.jobs.c.worker_id == worker_id, s.jobs.c.status.in_(list(statuses)))
        .values(worker_id=s.jobs.c.worker_id)
    )
    return conn.execute(query).rowcount == 1


def insert_event(conn: Connection, job_id: str, event: NewEvent, *, event_id: str, now: float) -> bool:
    """Insert one event on ``conn`` unless one with ``event_id`` exists; whether it was new."""
    values = {
        "id": event_id,
        "job_id": job_id,
        "created_at": int(now),
        "level": event.level,
        "type": event.type,
        "message": event.message,
        "data": event.data,
    }
    query = _insert_once(conn, s.job_events).values(**values).returning(s.job_events.c.seq)
    return conn.execute(query).first() is not None


def add_event_once(
    engine: Engine, job_id: str, event: NewEvent, *, event_id: str, held_by: str, statuses: Iterable[str]
) -> bool:
    """``Store.add_event_once``: the event, once, while ``held_by`` holds the job."""
    with engine.begin() as conn:
        if not hold(conn, job_id, held_by, statuses):
            return False
        return insert_event(conn, job_id, event, event_id=event_id, now=time.time())


def add_checkpoint_once(engine: Engine, row: CheckpointRow, *, held_by: str, statuses: Iterable[str]) -> bool:
    """``Store.add_checkpoint_once``: the checkpoint, unless its step has one, while ``held_by`` holds the job."""
    exists = select(s.job_checkpoints.c.id).where(
        and_(s.job_checkpoints.c.job_id == row.job_id, s.job_checkpoints.c.step_number == row.step_number)
    )
    try:
        with engine.begin() as conn:
            if not hold(conn, row.job_id, held_by, statuses) or conn.execute(exists).first() is not None:
                return False
            conn.execute(insert(s.job_checkpoints).values(**CHECKPOINTS.values(row)))
    except IntegrityError:  # a racing writer recorded the same checkpoint first
        return False
    return True


def delete_checkpoints(
    engine: Engine, job_id: str, *, held_by: str, statuses: Iterable[str], step: int | None = None
) -> bool:
    """``Store.delete_checkpoints``: the job's checkpoint at ``step`` (all when None) while ``held_by`` holds it."""
    query = delete(s.job_checkpoints).where(s.job_checkpoints.c.job_id == job_id)
    if step is not None:
        query = query.where(s.job_checkpoints.c.step_number == step)
    with engine.begin() as conn:
        if not hold(conn, job_id, held_by, statuses):
            return False
        conn.execute(query)
    return True


def _insert_once(conn: Connection, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` (no error to abort the transaction); openft runs on these two."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
