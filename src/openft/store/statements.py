"""Row mappers of the core tables, and prebuilt SELECTs for the reads behind every job request.

SQLAlchemy memoizes a statement's cache key on the statement object, so a ``select(...)`` built
anew for each call costs more than running it (about 180 us against 40 us for the 27-column job
select on SQLite). These are built once, with bound parameters. Each selects its mapper's columns
(:mod:`openft.store.mapper`), so a result row becomes its dataclass positionally.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from openft.store import schema as s
from openft.store.mapper import RowMapper
from openft.store.rows import CheckpointRow, EventRow, FileRow, JobRow

FILES = RowMapper(FileRow, s.files)
JOBS = RowMapper(JobRow, s.jobs)
EVENTS = RowMapper(EventRow, s.job_events)
CHECKPOINTS = RowMapper(CheckpointRow, s.job_checkpoints)

JOB = JOBS.select().where(s.jobs.c.id == bindparam("job_id"))
JOB_IN_ORGANIZATION = JOB.where(s.jobs.c.organization_id == bindparam("organization_id"))
JOB_SEQ = select(s.jobs.c.seq).where(s.jobs.c.id == bindparam("cursor"))
JOBS_PAGE = (
    JOBS.select()
    .where(s.jobs.c.organization_id == bindparam("organization_id"))
    .order_by(s.jobs.c.seq.desc())
    .limit(bindparam("limit"))
)
JOBS_PAGE_BEFORE = JOBS_PAGE.where(s.jobs.c.seq < bindparam("seq"))

EVENT_SEQ = select(s.job_events.c.seq).where(s.job_events.c.id == bindparam("cursor"))
EVENTS_PAGE = (
    EVENTS.select()
    .where(s.job_events.c.job_id == bindparam("job_id"))
    .order_by(s.job_events.c.seq.desc())
    .limit(bindparam("limit"))
)
EVENTS_PAGE_BEFORE = EVENTS_PAGE.where(s.job_events.c.seq < bindparam("seq"))

CHECKPOINT_SEQ = select(s.job_checkpoints.c.seq).where(s.job_checkpoints.c.id == bindparam("cursor"))
CHECKPOINTS_PAGE = (
    CHECKPOINTS.select()
    .where(s.job_checkpoints.c.job_id == bindparam("job_id"))
    .order_by(s.job_checkpoints.c.seq.desc())
    .limit(bindparam("limit"))
)
CHECKPOINTS_PAGE_BEFORE = CHECKPOINTS_PAGE.where(s.job_checkpoints.c.seq < bindparam("seq"))
