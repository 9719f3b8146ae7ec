"""The Store: every read and write of openft's state, on SQLite or PostgreSQL through SQLAlchemy Core.

Sync by design (route handlers run in FastAPI's thread pool; the worker is a plain loop). Each
method is one short transaction. The queue is the ``jobs`` table: :meth:`Store.claim_next_job`
is one atomic ``UPDATE ... RETURNING`` (with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite
serialises writers, so the same statement is atomic there).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Row

from openft import ids
from openft.errors import FileNotFound, JobNotFound
from openft.store import schema as s
from openft.store import statements as q
from openft.store.file_expiry import unexpired
from openft.store.job_writes import JobChange, change_job, claim_job
from openft.store.rows import CheckpointRow, EventRow, FileRow, JobRow

R = TypeVar("R")


@functools.cache
def _field_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _to_row(cls: type[R], row: Row[Any]) -> R:
    names = _field_names(cls)
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _values(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _page(rows: Sequence[R], limit: int) -> tuple[list[R], bool]:
    return list(rows[:limit]), len(rows) > limit


class Store:
    """Typed access to files, jobs, events, checkpoints and registered local models."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    # -- files -------------------------------------------------------------------------------
    def insert_file(self, row: FileRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.files).values(**_values(row)))

    def get_file(self, file_id: str, organization_id: str | None = None) -> FileRow:
        """Raises FileNotFound when absent, expired or owned by another organization."""
        query = select(s.files).where(s.files.c.id == file_id, unexpired(time.time()))
        if organization_id is not None:
            query = query.where(s.files.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise FileNotFound(f"No such File object: {file_id}", param="id")
        return _to_row(FileRow, row)

    def list_files(
        self,
        organization_id: str,
        *,
        purpose: str | None = None,
        limit: int = 10000,
        order: str = "desc",
        after: str | None = None,
    ) -> tuple[list[FileRow], bool]:
        query = select(s.files).where(s.files.c.organization_id == organization_id, unexpired(time.time()))
        if purpose:
            query = query.where(s.files.c.purpose == purpose)
        with self.engine.connect() as conn:
            if after:
                seq = conn.execute(select(s.files.c.seq).where(s.files.c.id == after)).scalar()
                if seq is not None:
                    query = query.where(s.files.c.seq < seq if order == "desc" else s.files.c.seq > seq)
            ordering = s.files.c.seq.desc() if order == "desc" else s.files.c.seq.asc()
            rows = conn.execute(query.order_by(ordering).limit(limit + 1)).all()
        return _page([_to_row(FileRow, r) for r in rows], limit)

    def delete_file(self, file_id: str, organization_id: str) -> FileRow:
        row = self.get_file(file_id, organization_id)
        with self.engine.begin() as conn:
            conn.execute(delete(s.files).where(s.files.c.id == file_id))
        return row

    # -- jobs --------------------------------------------------------------------------------
    def insert_job(self, row: JobRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.jobs).values(**_values(row)))
            for key, value in (row.metadata or {}).items():
                conn.execute(insert(s.job_metadata).values(job_id=row.id, key=key, value=value))

    def get_job(self, job_id: str, organization_id: str | None = None) -> JobRow:
        """Raises JobNotFound when absent or owned by another organization."""
        with self.engine.connect() as conn:
            if organization_id is None:
                row = conn.execute(q.JOB, {"job_id": job_id}).first()
            else:
                row = conn.execute(
                    q.JOB_IN_ORGANIZATION, {"job_id": job_id, "organization_id": organization_id}
                ).first()
        if row is None:
            raise JobNotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return JobRow(*row)

    def list_jobs(
        self,
        organization_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: dict[str, str] | None = None,
    ) -> tuple[list[JobRow], bool]:
        """Newest first; ``metadata`` keeps jobs carrying every given key/value pair."""
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
        return _page(q.rows_of(JobRow, rows), limit)

    def update_job(
        self,
        job_id: str,
        *,
        expect_status: str | Iterable[str] | None = None,
        expect_worker: str | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set of a job's other fields: update only if the job is still in ``expect_status``
        (and held by ``expect_worker``). Returns whether the row changed, so racing writers never
        clobber each other. A job's status changes only through :meth:`change_job`.

        Raises:
            TypeError: ``values`` names ``status``.
        """
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
        """Change a job, its status included, with its events and webhook outbox rows in one transaction
        (see ``store/job_writes.py``); None when the change's conditions did not hold. Called only by
        ``jobs/transitions.py``, which checks each move against the status table."""
        return change_job(self.engine, job_id, change)

    def claim_next_job(
        self,
        worker_id: str,
        status: str,
        *,
        to_status: str | None = None,
        now: float | None = None,
        stale_before: float | None = None,
    ) -> JobRow | None:
        """Atomically take the oldest job in ``status`` that no live worker holds.

        A job is free when it has no worker or its worker's heartbeat is older than
        ``stale_before``. The claimed job gets this worker, a fresh heartbeat and, if given,
        ``to_status``. Returns None when there is nothing to claim.
        """
        now = time.time() if now is None else now
        return claim_job(self.engine, worker_id, status, to_status=to_status, now=now, stale_before=stale_before)

    def find_job_by_model(self, model_name: str) -> JobRow | None:
        """The succeeded job whose fine-tuned model is ``model_name`` (deleted models excluded)."""
        query = select(s.jobs).where(s.jobs.c.fine_tuned_model == model_name, s.jobs.c.model_deleted.is_(False))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _to_row(JobRow, row) if row is not None else None

    def list_fine_tuned_jobs(self, organization_id: str) -> list[JobRow]:
        query = (
            select(s.jobs)
            .where(
                s.jobs.c.organization_id == organization_id,
                s.jobs.c.fine_tuned_model.is_not(None),
                s.jobs.c.model_deleted.is_(False),
            )
            .order_by(s.jobs.c.seq)
        )
        with self.engine.connect() as conn:
            return [_to_row(JobRow, r) for r in conn.execute(query).all()]

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
        values = _values(row)
        values.pop("seq")
        with self.engine.begin() as conn:
            row.seq = conn.execute(insert(s.job_events).values(**values).returning(s.job_events.c.seq)).scalar_one()
        return row

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[EventRow], bool]:
        """Newest first; ``after`` is the id of the last event of the previous page."""
        with self.engine.connect() as conn:
            seq = conn.execute(q.EVENT_SEQ, {"cursor": after}).scalar() if after else None
            query = q.EVENTS_PAGE if seq is None else q.EVENTS_PAGE_BEFORE
            rows = conn.execute(query, {"job_id": job_id, "limit": limit + 1, "seq": seq}).all()
        return _page(q.rows_of(EventRow, rows), limit)

    def count_events(self, job_id: str) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(s.job_events).where(s.job_events.c.job_id == job_id)
            return int(conn.execute(query).scalar_one())

    # -- checkpoints -------------------------------------------------------------------------
    def add_checkpoint(self, row: CheckpointRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.job_checkpoints).values(**_values(row)))

    def list_checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> tuple[list[CheckpointRow], bool]:
        """Newest first, like OpenAI's listing."""
        with self.engine.connect() as conn:
            seq = conn.execute(q.CHECKPOINT_SEQ, {"cursor": after}).scalar() if after else None
            query = q.CHECKPOINTS_PAGE if seq is None else q.CHECKPOINTS_PAGE_BEFORE
            rows = conn.execute(query, {"job_id": job_id, "limit": limit + 1, "seq": seq}).all()
        return _page(q.rows_of(CheckpointRow, rows), limit)

    def get_checkpoint_by_model(self, name: str) -> CheckpointRow | None:
        query = select(s.job_checkpoints).where(s.job_checkpoints.c.fine_tuned_model_checkpoint == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _to_row(CheckpointRow, row) if row is not None else None

    def list_organization_checkpoints(self, organization_id: str) -> list[CheckpointRow]:
        query = (
            select(s.job_checkpoints)
            .join(s.jobs, s.jobs.c.id == s.job_checkpoints.c.job_id)
            .where(s.job_checkpoints.c.organization_id == organization_id, s.jobs.c.model_deleted.is_(False))
            .order_by(s.job_checkpoints.c.seq)
        )
        with self.engine.connect() as conn:
            return [_to_row(CheckpointRow, r) for r in conn.execute(query).all()]

    # -- local models ------------------------------------------------------------------------
    def add_local_model(self, model_id: str, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(s.local_models).where(s.local_models.c.id == model_id))
            conn.execute(insert(s.local_models).values(id=model_id, path=path, created_at=int(time.time())))

    def local_models(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.id: r.path for r in conn.execute(select(s.local_models)).all()}


SQLITE_POOL_SIZE = 48
SQLITE_MMAP_BYTES = 1 << 30


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets the API read while the worker writes; busy_timeout makes writers queue instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Reads through a memory map share the OS page cache instead of copying pages into each
    # connection's own cache with read() calls.
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pool as many connections as there are threads that query at once (the API's thread pool, 40 by
        # default, and the worker's): a connection opened past the pool runs the pragmas, starts with an
        # empty page cache and is closed after one request.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def open_store(url: str, *, upgrade: bool = True) -> Store:
    """Connect to ``url`` and (by default) bring its schema to the newest migration."""
    engine = create_db_engine(url)
    if upgrade:
        from openft.store.migrate import upgrade_database

        upgrade_database(engine)
    return Store(engine)
