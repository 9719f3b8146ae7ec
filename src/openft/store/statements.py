"""Prebuilt SELECTs for the reads behind every job request (retrieve, list, events, checkpoints).

SQLAlchemy memoizes a statement's cache key on the statement object, so a ``select(...)`` built
anew for each call costs more than running it (about 180 us against 40 us for the 27-column job
select on SQLite). These are built once, with bound parameters. Each selects its row dataclass's
fields in field order, so a result row becomes its dataclass positionally (:func:`rows_of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Column, Table, bindparam, select
from sqlalchemy.engine import Row

from openft.store import schema as s
from openft.store.rows import CheckpointRow, EventRow, JobRow

R = TypeVar("R")


def columns_of(table: Table, row_class: type[Any]) -> tuple[Column[Any], ...]:
    """``table``'s columns named by ``row_class``'s fields, in field order."""
    return tuple(table.c[f.name] for f in dataclasses.fields(row_class))


def rows_of(row_class: type[R], rows: Iterable[Row[Any]]) -> list[R]:
    """Rows of a statement that selected ``columns_of(table, row_class)``, as ``row_class``."""
    return [row_class(*row) for row in rows]


JOB_COLUMNS = columns_of(s.jobs, JobRow)
EVENT_COLUMNS = columns_of(s.job_events, EventRow)
CHECKPOINT_COLUMNS = columns_of(s.job_checkpoints, CheckpointRow)

JOB = select(*JOB_COLUMNS).where(s.jobs.c.id == bindparam("job_id"))
JOB_IN_ORGANIZATION = JOB.where(s.jobs.c.organization_id == bindparam("organization_id"))
JOB_SEQ = select(s.jobs.c.seq).where(s.jobs.c.id == bindparam("cursor"))
JOBS_PAGE = (
    select(*JOB_COLUMNS)
    .where(s.jobs.c.organization_id == bindparam("organization_id"))
    .order_by(s.jobs.c.seq.desc())
    .limit(bindparam("limit"))
)
JOBS_PAGE_BEFORE = JOBS_PAGE.where(s.jobs.c.seq < bindparam("seq"))

EVENT_SEQ = select(s.job_events.c.seq).where(s.job_events.c.id == bindparam("cursor"))
EVENTS_PAGE = (
    select(*EVENT_COLUMNS)
    .where(s.job_events.c.job_id == bindparam("job_id"))
    .order_by(s.job_events.c.seq.desc())
    .limit(bindparam("limit"))
)
EVENTS_PAGE_BEFORE = EVENTS_PAGE.where(s.job_events.c.seq < bindparam("seq"))

CHECKPOINT_SEQ = select(s.job_checkpoints.c.seq).where(s.job_checkpoints.c.id == bindparam("cursor"))
CHECKPOINTS_PAGE = (
    select(*CHECKPOINT_COLUMNS)
    .where(s.job_checkpoints.c.job_id == bindparam("job_id"))
    .order_by(s.job_checkpoints.c.seq.desc())
    .limit(bindparam("limit"))
)
CHECKPOINTS_PAGE_BEFORE = CHECKPOINTS_PAGE.where(s.job_checkpoints.c.seq < bindparam("seq"))
