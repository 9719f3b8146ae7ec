"""SqlStore: the :class:`~openft.store.base.Store` on SQLite or PostgreSQL, through SQLAlchemy Core.

Sync by design (route handlers run in FastAPI's thread pool; the worker is a plain loop). Each
method is one short transaction. The queue is the ``jobs`` table: :meth:`SqlStore.claim_next_job`
is one atomic ``UPDATE ... RETURNING`` (with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite
serialises writers, so the same statement is atomic there). Rows become dataclasses only through
the mappers of ``store/statements.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from openft import ids
from openft.errors import FileNotFound, JobNotFound
from openft.store import file_expiry, job_writes
from openft.store import schema as s
from openft.store import statements as q
from openft.store.base import Conflict, JobChange, NewEvent
from openft.store.completions import SqlCompletions
from openft.store.engines import create_db_engine
from openft.store.evals import SqlEvals
from openft.store.keys import SqlApiKeys
from openft.store.permissions import SqlPermissions
from openft.store.responses import SqlResponses
from openft.store.rows import CheckpointRow, EventRow, FileRow, JobRow
from openft.store.uploads import SqlUploads
from openft.store.webhooks import SqlWebhooks

__all__ = ["SqlStore", "create_db_engine", "open_store"]

R = TypeVar("R")


def _page(rows: Sequence[R], limit: int) -> tuple[list[R], bool]:
    return list(rows[:limit]), len(rows) > limit


@contextmanager
def _inserting(engine: Engine) -> Iterator[Connection]:
    """A write transaction whose unique-key violation is a :class:`Conflict`."""
    try:
        with engine.begin() as conn:
            yield conn
    except IntegrityError as exc:
        raise Conflict(str(exc.orig)) from exc


class SqlStore:
    """Files, jobs, events, checkpoints and registered local models in one SQL database, with the satellite
    records (API keys, permissions, uploads, webhooks, responses, evals, stored completions) on the same
    engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self.api_keys = SqlApiKeys(engine)
        self.permissions = SqlPermissions(engine)
        self.uploads = SqlUploads(engine)
        self.webhooks = SqlWebhooks(engine)
        self.responses = SqlResponses(engine)
        self.evals = SqlEvals(engine)
        self.completions = SqlCompletions(engine)

    # -- files -------------------------------------------------------------------------------
    def insert_file(self, row: FileRow) -> None:
        with _inserting(self.engine) as conn:
            conn.execute(insert(s.files).values(**q.FILES.values(row)))

    def get_file(self, file_id: str, organization_id: str | None = None) -> FileRow:
        query = q.FILES.select().where(s.files.c.id == file_id, file_expiry.unexpired(time.time()))
        if organization_id is not None:
            query = query.where(s.files.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = q.FILES.maybe(conn.execute(query).first())
        if row is None:
            raise FileNotFound(f"No such File object: {file_id}", param="id")
        return row

    def list_files(
        self,
        organization_id: str,
        *,
        purpose: str | None = None,
        limit: int = 10000,
        order: str = "desc",
        after: str | None = None,
    ) -> tuple[list[FileRow], bool]:
        query = q.FILES.select().where(s.files.c.organization_id == organization_id, file_expiry.unexpired(time.time()))
        if purpose:
            query = query.where(s.files.c.purpose == purpose)
        with self.engine.connect() as conn:
            if after:
                seq = conn.execute(select(s.files.c.seq).where(s.files.c.id == after)).scalar()
                if seq is not None:
                    query = query.where(s.files.c.seq < seq if order == "desc" else s.files.c.seq > seq)
            ordering = s.files.c.seq.desc() if order == "desc" else s.files.c.seq.asc()
            rows = conn.execute(query.order_by(ordering).limit(limit + 1)).all()
        return _page(q.FILES.all(rows), limit)

    def delete_file(self, file_id: str, organization_id: str) -> FileRow:
        row = self.get_file(file_id, organization_id)
        with self.engine.begin() as conn:
            conn.execute(delete(s.files).where(s.files.c.id == file_id))
        return row

    def expired_files(self, before: float, limit: int) -> list[tuple[str, str]]:
        return file_expiry.expired_files(self.engine, before, limit)

    def delete_expired_files(self, file_ids: Sequence[str], before: float) -> int:
        return file_expiry.delete_expired_rows(self.engine, file_ids, before)

    # -- jobs --------------------------------------------------------------------------------
    def insert_job(self, row: JobRow) -> None:
        with _inserting(self.engine) as conn:
            conn.execute(insert(s.jobs).values(**q.JOBS.values(row)))
            for key, value in (row.metadata or {}).items():
                conn.execute(insert(s.job_metadata).values(job_id=row.id, key=key, value=value))

    def get_job(self, job_id: str, organization_id: str | None = None) -> JobRow:
        with self.engine.connect() as conn:
            if organization_id is None:
                row = conn.execute(q.JOB, {"job_id": job_id}).first()
            else:
                row = conn.execute(
                    q.JOB_IN_ORGANIZATION, {"job_id": job_id, "organization_id": organization_id}
                ).first()
        if row is None:
            raise JobNotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return q.JOBS.one(row)

    def list_jobs(
        self,
        organization_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: dict[str, str] | None = None,
    ) -> tuple[list[JobRow], bool]:
        params: dict[str, Any] = {"organization_id": organization_id, "limit": limit + 1}
        with self.engine.connect() as conn:
            seq = conn.execute(q.JOB_SEQ, {"cursor": after}).scalar() if after else None
            query = q.JOBS_PAGE if seq is None else q.JOBS_PAGE_BEFORE
            params["seq"] = seq
            for key, value in (metadata or {}).items():
                query = query.where(
                    s.jobs.c.id.in_(
                        select(s.job_metadata.c.job_id).where(
                            s.job_metadata.c.key == key, s.job_metadata.c.value == value
                        )
                    )
                )
            rows = conn.execute(query, params).all()
        return _page(q.JOBS.all(rows), limit)

    def update_job(
        self,
        job_id: str,
        *,
        expect_status: str | Iterable[str] | None = None,
        expect_worker: str | None = None,
        **values: Any,
    ) -> bool:
        if "status" in values:
            raise TypeError("a job's status changes only through jobs/transitions.py (Store.change_job)")
        query = update(s.jobs).where(s.jobs.c.id == job_id)
        if expect_status is not None:
            statuses = [expect_status] if isinstance(expect_status, str) else list(expect_status)
            query = query.where(s.jobs.c.status.in_(statuses))
        if expect_worker is not None:
            query = query.where(s.jobs.c.worker_id == expect_worker)
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def change_job(self, job_id: str, change: JobChange) -> JobRow | None:
        """See ``store/job_writes.py``; called only by ``jobs/transitions.py``, which checks each move
        against the status table."""
        return job_writes.change_job(self.engine, job_id, change)

    def claim_next_job(
        self,
        worker_id: str,
        status: str,
        *,
        to_status: str | None = None,
        now: float | None = None,
        stale_before: float | None = None,
    ) -> JobRow | None:
        now = time.time() if now is None else now
        return job_writes.claim_job(
            self.engine, worker_id, status, to_status=to_status, now=now, stale_before=stale_before
        )

    def find_job_by_model(self, model_name: str) -> JobRow | None:
        query = q.JOBS.select().where(s.jobs.c.fine_tuned_model == model_name, s.jobs.c.model_deleted.is_(False))
        with self.engine.connect() as conn:
            return q.JOBS.maybe(conn.execute(query).first())

    def list_fine_tuned_jobs(self, organization_id: str) -> list[JobRow]:
        query = (
            q.JOBS.select()
            .where(
                s.jobs.c.organization_id == organization_id,
                s.jobs.c.fine_tuned_model.is_not(None),
                s.jobs.c.model_deleted.is_(False),
            )
            .order_by(s.jobs.c.seq)
        )
        with self.engine.connect() as conn:
            return q.JOBS.all(conn.execute(query))

    def count_jobs(self, organization_id: str, statuses: Iterable[str]) -> int:
        query = (
            select(func.count())
            .select_from(s.jobs)
            .where(s.jobs.c.organization_id == organization_id, s.jobs.c.status.in_(list(statuses)))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def held_jobs(self, statuses: Iterable[str]) -> list[JobRow]:
        query = q.JOBS.select().where(s.jobs.c.status.in_(list(statuses)), s.jobs.c.worker_id.is_not(None))
        with self.engine.connect() as conn:
            return q.JOBS.all(conn.execute(query))

    # -- events ------------------------------------------------------------------------------
    def append_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        type: str = "message",
        data: dict[str, Any] | None = None,
        created_at: int | None = None,
    ) -> EventRow:
        row = EventRow(
            id=ids.new_event_id(),
            job_id=job_id,
            created_at=created_at or int(time.time()),
            level=level,
            type=type,
            message=message,
            data=data,
        )
        values = q.EVENTS.values(row)
        values.pop("seq")
        with _inserting(self.engine) as conn:
            row.seq = conn.execute(insert(s.job_events).values(**values).returning(s.job_events.c.seq)).scalar_one()
        return row

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[EventRow], bool]:
        with self.engine.connect() as conn:
            seq = conn.execute(q.EVENT_SEQ, {"cursor": after}).scalar() if after else None
            query = q.EVENTS_PAGE if seq is None else q.EVENTS_PAGE_BEFORE
            rows = conn.execute(query, {"job_id": job_id, "limit": limit + 1, "seq": seq}).all()
        return _page(q.EVENTS.all(rows), limit)

    def count_events(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(s.job_events).where(s.job_events.c.job_id == job_id)
            return int(conn.execute(query).scalar_one())

    def event_ids(self, job_id: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(s.job_events.c.id).where(s.job_events.c.job_id == job_id)).scalars())

    def add_event_once(
        self, job_id: str, event: NewEvent, *, event_id: str, held_by: str, statuses: Iterable[str]
    ) -> bool:
        return job_writes.add_event_once(
            self.engine, job_id, event, event_id=event_id, held_by=held_by, statuses=statuses
        )

    # -- checkpoints -------------------------------------------------------------------------
    def add_checkpoint(self, row: CheckpointRow) -> None:
        with _inserting(self.engine) as conn:
            conn.execute(insert(s.job_checkpoints).values(**q.CHECKPOINTS.values(row)))

    def add_checkpoint_once(self, row: CheckpointRow, *, held_by: str, statuses: Iterable[str]) -> bool:
        return job_writes.add_checkpoint_once(self.engine, row, held_by=held_by, statuses=statuses)

    def delete_checkpoints(
        self, job_id: str, *, held_by: str, statuses: Iterable[str], step: int | None = None
    ) -> bool:
        return job_writes.delete_checkpoints(self.engine, job_id, held_by=held_by, statuses=statuses, step=step)

    def list_checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> tuple[list[CheckpointRow], bool]:
        with self.engine.connect() as conn:
            seq = conn.execute(q.CHECKPOINT_SEQ, {"cursor": after}).scalar() if after else None
            query = q.CHECKPOINTS_PAGE if seq is None else q.CHECKPOINTS_PAGE_BEFORE
            rows = conn.execute(query, {"job_id": job_id, "limit": limit + 1, "seq": seq}).all()
        return _page(q.CHECKPOINTS.all(rows), limit)

    def get_checkpoint_by_model(self, name: str) -> CheckpointRow | None:
        query = q.CHECKPOINTS.select().where(s.job_checkpoints.c.fine_tuned_model_checkpoint == name)
        with self.engine.connect() as conn:
            return q.CHECKPOINTS.maybe(conn.execute(query).first())

    def list_organization_checkpoints(self, organization_id: str) -> list[CheckpointRow]:
        query = (
            q.CHECKPOINTS.select()
            .join(s.jobs, s.jobs.c.id == s.job_checkpoints.c.job_id)
            .where(s.job_checkpoints.c.organization_id == organization_id, s.jobs.c.model_deleted.is_(False))
            .order_by(s.job_checkpoints.c.seq)
        )
        with self.engine.connect() as conn:
            return q.CHECKPOINTS.all(conn.execute(query))

    # -- local models ------------------------------------------------------------------------
    def add_local_model(self, model_id: str, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(s.local_models).where(s.local_models.c.id == model_id))
            conn.execute(insert(s.local_models).values(id=model_id, path=path, created_at=int(time.time())))

    def local_models(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.id: r.path for r in conn.execute(select(s.local_models)).all()}


def open_store(url: str, *, upgrade: bool = True) -> SqlStore:
    """Connect to ``url`` and (by default) bring its schema to the newest migration."""
    engine = create_db_engine(url)
    if upgrade:
        from openft.store.migrate import upgrade_database

        upgrade_database(engine)
    return SqlStore(engine)
