"""InMemoryStore: the :class:`~openft.store.base.Store` in plain Python objects, for unit tests.

Like procrastinate's in-memory connector, it is a real implementation rather than a mock: the same
contract suite runs against it and against SQLite and PostgreSQL (``tests/integration/test_store_contract.py``),
so the job lifecycle can be tested in milliseconds with the semantics the databases have: atomic claims
of the oldest free job, heartbeats and stale takeovers, compare-and-set writes, organization scoping,
newest-first pages with cursors, unique ids (:class:`~openft.store.base.Conflict`), file expiry by the
clock, and the webhook outbox written with a job's terminal change. One lock makes every method one
transaction. Rows are copied in and out, so a caller never holds a stored row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from openft import ids
from openft.errors import FileNotFound, JobNotFound
from openft.store.base import Conflict, JobChange, NewEvent
from openft.store.memory_answers import MemoryCompletions, MemoryResponses
from openft.store.memory_evals import MemoryEvals
from openft.store.memory_records import (
    MemoryApiKeys,
    MemoryPermissions,
    MemoryState,
    MemoryUploads,
    MemoryWebhooks,
    Table,
    out,
    replace,
)
from openft.store.rows import CheckpointRow, EventRow, FileRow, JobRow

R = TypeVar("R")


def _page(
    rows: list[R], *, newest_first: bool, cursor_seq: int | None, seq: Callable[[R], int], limit: int
) -> tuple[list[R], bool]:
    """One page of ``rows`` (in seq order): after the cursor's seq, ``limit`` of them, and whether more follow."""
    ordered = rows[::-1] if newest_first else rows
    if cursor_seq is not None:
        ordered = [r for r in ordered if (seq(r) < cursor_seq if newest_first else seq(r) > cursor_seq)]
    return [out(r) for r in ordered[:limit]], len(ordered) > limit


def _cursor(table: Table[Any], after: str | None) -> int | None:
    """The seq of the row named by a cursor (any row of the table, as in SQL); None for an unknown one."""
    found = table.get(after) if after else None
    return found[0] if found is not None else None


class InMemoryStore:
    """Every table in memory; see the module docstring."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self.api_keys = MemoryApiKeys(self.state)
        self.permissions = MemoryPermissions(self.state)
        self.uploads = MemoryUploads(self.state)
        self.webhooks = MemoryWebhooks(self.state)
        self.responses = MemoryResponses(self.state)
        self.evals = MemoryEvals(self.state)
        self.completions = MemoryCompletions(self.state)
        self._local_models: dict[str, str] = {}

    @property
    def _files(self) -> Table[FileRow]:
        return self.state.table("files")

    @property
    def _jobs(self) -> Table[JobRow]:
        return self.state.table("jobs")

    @property
    def _events(self) -> Table[EventRow]:
        return self.state.table("job_events")

    @property
    def _checkpoints(self) -> Table[CheckpointRow]:
        return self.state.table("job_checkpoints")

    # -- files -------------------------------------------------------------------------------
    def insert_file(self, row: FileRow) -> None:
        with self.state.lock:
            self.state.insert("files", row.id, row)

    def _live_files(self, now: float) -> list[FileRow]:
        return [f for f in self._files.ordered() if f.expires_at is None or f.expires_at > now]

    def get_file(self, file_id: str, organization_id: str | None = None) -> FileRow:
        with self.state.lock:
            row = self._files.row(file_id)
        expired = row is not None and row.expires_at is not None and row.expires_at <= time.time()
        if row is None or expired or organization_id not in (None, row.organization_id):
            raise FileNotFound(f"No such File object: {file_id}", param="id")
        return out(row)

    def list_files(
        self,
        organization_id: str,
        *,
        purpose: str | None = None,
        limit: int = 10000,
        order: str = "desc",
        after: str | None = None,
    ) -> tuple[list[FileRow], bool]:
        with self.state.lock:
            rows = [
                f
                for f in self._live_files(time.time())
                if f.organization_id == organization_id and (not purpose or f.purpose == purpose)
            ]
            seqs = {f.id: self._files[f.id][0] for f in rows}
            cursor = _cursor(self._files, after)
        return _page(rows, newest_first=order == "desc", cursor_seq=cursor, seq=lambda f: seqs[f.id], limit=limit)

    def delete_file(self, file_id: str, organization_id: str) -> FileRow:
        with self.state.lock:
            row = self.get_file(file_id, organization_id)
            del self._files[file_id]
        return row

    def expired_files(self, before: float, limit: int) -> list[tuple[str, str]]:
        with self.state.lock:
            expired = [(f.expires_at, f) for f in self._files.ordered() if f.expires_at is not None]
        due = sorted((item for item in expired if item[0] <= before), key=lambda item: item[0])
        return [(f.id, f.blob_path) for _, f in due[:limit]]

    def delete_expired_files(self, file_ids: Sequence[str], before: float) -> int:
        with self.state.lock:
            gone = [file_id for file_id in dict.fromkeys(file_ids) if _expired(self._files.row(file_id), before)]
            for file_id in gone:
                del self._files[file_id]
        return len(gone)

    # -- jobs --------------------------------------------------------------------------------
    def insert_job(self, row: JobRow) -> None:
        with self.state.lock:
            self.state.insert("jobs", row.id, row)

    def _job(self, job_id: str) -> JobRow | None:
        return self._jobs.row(job_id)

    def _write_job(self, job: JobRow, **values: Any) -> JobRow:
        changed = replace(job, **values)
        self._jobs.put(job.id, changed)
        return changed

    def get_job(self, job_id: str, organization_id: str | None = None) -> JobRow:
        with self.state.lock:
            job = self._job(job_id)
            if job is None or organization_id not in (None, job.organization_id):
                raise JobNotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
            return out(job)

    def list_jobs(
        self,
        organization_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        metadata: dict[str, str] | None = None,
    ) -> tuple[list[JobRow], bool]:
        wanted = (metadata or {}).items()
        with self.state.lock:
            rows = [
                j
                for j in self._jobs.ordered()
                if j.organization_id == organization_id and all((j.metadata or {}).get(k) == v for k, v in wanted)
            ]
            seqs = {j.id: self._jobs[j.id][0] for j in rows}
            cursor = _cursor(self._jobs, after)
            return _page(rows, newest_first=True, cursor_seq=cursor, seq=lambda j: seqs[j.id], limit=limit)

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
        statuses = None if expect_status is None else _statuses(expect_status)
        with self.state.lock:
            job = self._job(job_id)
            if job is None or (statuses is not None and job.status not in statuses):
                return False
            if expect_worker is not None and job.worker_id != expect_worker:
                return False
            self._write_job(job, **values)
            return True

    def change_job(self, job_id: str, change: JobChange) -> JobRow | None:
        values = dict(change.values)
        if "status" in values:
            raise TypeError("a job's status is JobChange.status, not one of its values")
        if change.status is not None:
            values["status"] = change.status
        with self.state.lock:
            job = self._job(job_id)
            if job is None or job.status not in change.expect_status:
                return None
            if change.worker_id is not None and job.worker_id != change.worker_id:
                return None
            if change.stale_before is not None and not (
                job.heartbeat_at is None or job.heartbeat_at < change.stale_before
            ):
                return None
            job = self._write_job(job, **values)
            now = time.time()
            for event in change.events:
                self._insert_event(job_id, event, event_id=ids.new_event_id(), now=now)
            if change.webhook is not None:
                self.webhooks.queue_deliveries(
                    organization_id=job.organization_id,
                    event_type=change.webhook.event_type,
                    event_id=change.webhook.event_id,
                    payload=change.webhook.payload,
                    now=now,
                )
            return out(job)

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

        def free(job: JobRow) -> bool:
            if job.worker_id is None:
                return True
            # As in SQL, a held job with no heartbeat is never stale (NULL < x is not true).
            return stale_before is not None and job.heartbeat_at is not None and job.heartbeat_at < stale_before

        with self.state.lock:
            job = next((j for j in self._jobs.ordered() if j.status == status and free(j)), None)
            if job is None:
                return None
            values: dict[str, Any] = {"worker_id": worker_id, "heartbeat_at": now}
            if to_status is not None:
                values["status"] = to_status
            return out(self._write_job(job, **values))

    def find_job_by_model(self, model_name: str) -> JobRow | None:
        with self.state.lock:
            return next(
                (out(j) for j in self._jobs.ordered() if j.fine_tuned_model == model_name and not j.model_deleted),
                None,
            )

    def list_fine_tuned_jobs(self, organization_id: str) -> list[JobRow]:
        with self.state.lock:
            return [
                out(j)
                for j in self._jobs.ordered()
                if j.organization_id == organization_id and j.fine_tuned_model is not None and not j.model_deleted
            ]

    def count_jobs(self, organization_id: str, statuses: Iterable[str]) -> int:
        wanted = set(statuses)
        with self.state.lock:
            return sum(1 for _, j in self._jobs.values() if j.organization_id == organization_id and j.status in wanted)

    def held_jobs(self, statuses: Iterable[str]) -> list[JobRow]:
        wanted = set(statuses)
        with self.state.lock:
            return [out(j) for j in self._jobs.ordered() if j.status in wanted and j.worker_id is not None]

    def _holds(self, job_id: str, worker_id: str, statuses: Iterable[str]) -> bool:
        job = self._job(job_id)
        return job is not None and job.worker_id == worker_id and job.status in set(statuses)

    # -- events ------------------------------------------------------------------------------
    def _insert_event(self, job_id: str, event: NewEvent, *, event_id: str, now: float) -> bool:
        if event_id in self._events:
            return False
        row = EventRow(event_id, job_id, int(now), event.level, event.type, event.message, event.data)
        seq = self.state.insert("job_events", event_id, row)
        self._events.put(event_id, replace(row, seq=seq))
        return True

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
        event_id = ids.new_event_id()
        with self.state.lock:
            self._insert_event(job_id, NewEvent(message, level, type, data), event_id=event_id, now=time.time())
            row = self._events[event_id][1]
            if created_at:
                row = replace(row, created_at=created_at)
                self._events.put(event_id, row)
            return out(row)

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[EventRow], bool]:
        with self.state.lock:
            rows = [e for e in self._events.ordered() if e.job_id == job_id]
            cursor = _cursor(self._events, after)
        return _page(rows, newest_first=True, cursor_seq=cursor, seq=lambda e: e.seq, limit=limit)

    def count_events(self, job_id: str) -> int:
        with self.state.lock:
            return sum(1 for _, e in self._events.values() if e.job_id == job_id)

    def event_ids(self, job_id: str) -> set[str]:
        with self.state.lock:
            return {e.id for _, e in self._events.values() if e.job_id == job_id}

    def add_event_once(
        self, job_id: str, event: NewEvent, *, event_id: str, held_by: str, statuses: Iterable[str]
    ) -> bool:
        with self.state.lock:
            return self._holds(job_id, held_by, statuses) and self._insert_event(
                job_id, event, event_id=event_id, now=time.time()
            )

    # -- checkpoints -------------------------------------------------------------------------
    def add_checkpoint(self, row: CheckpointRow) -> None:
        with self.state.lock:
            taken = any(
                c.fine_tuned_model_checkpoint == row.fine_tuned_model_checkpoint for _, c in self._checkpoints.values()
            )
            if taken:
                raise Conflict(f"job_checkpoints: {row.fine_tuned_model_checkpoint} exists")
            self.state.insert("job_checkpoints", row.id, row)

    def add_checkpoint_once(self, row: CheckpointRow, *, held_by: str, statuses: Iterable[str]) -> bool:
        with self.state.lock:
            if not self._holds(row.job_id, held_by, statuses):
                return False
            if any(c.job_id == row.job_id and c.step_number == row.step_number for _, c in self._checkpoints.values()):
                return False
            try:
                self.add_checkpoint(row)
            except Conflict:
                return False
            return True

    def delete_checkpoints(
        self, job_id: str, *, held_by: str, statuses: Iterable[str], step: int | None = None
    ) -> bool:
        with self.state.lock:
            if not self._holds(job_id, held_by, statuses):
                return False
            doomed = [
                c.id
                for _, c in self._checkpoints.values()
                if c.job_id == job_id and (step is None or c.step_number == step)
            ]
            for checkpoint_id in doomed:
                del self._checkpoints[checkpoint_id]
            return True

    def list_checkpoints(
        self, job_id: str, *, after: str | None = None, limit: int = 10
    ) -> tuple[list[CheckpointRow], bool]:
        with self.state.lock:
            rows = [c for c in self._checkpoints.ordered() if c.job_id == job_id]
            seqs = {c.id: self._checkpoints[c.id][0] for c in rows}
            cursor = _cursor(self._checkpoints, after)
        return _page(rows, newest_first=True, cursor_seq=cursor, seq=lambda c: seqs[c.id], limit=limit)

    def get_checkpoint_by_model(self, name: str) -> CheckpointRow | None:
        with self.state.lock:
            return next((out(c) for c in self._checkpoints.ordered() if c.fine_tuned_model_checkpoint == name), None)

    def list_organization_checkpoints(self, organization_id: str) -> list[CheckpointRow]:
        with self.state.lock:
            live = {j.id for _, j in self._jobs.values() if not j.model_deleted}
            return [
                out(c) for c in self._checkpoints.ordered() if c.organization_id == organization_id and c.job_id in live
            ]

    # -- local models ------------------------------------------------------------------------
    def add_local_model(self, model_id: str, path: str) -> None:
        with self.state.lock:
            self._local_models[model_id] = path

    def local_models(self) -> dict[str, str]:
        with self.state.lock:
            return dict(self._local_models)


def _expired(row: FileRow | None, before: float) -> bool:
    return row is not None and row.expires_at is not None and row.expires_at <= before


def _statuses(expect: str | Iterable[str]) -> set[str]:
    return {expect} if isinstance(expect, str) else set(expect)
