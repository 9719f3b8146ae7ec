"""Persistence of evals, eval runs and their output items.

Its own small seam, :class:`EvalRecords` (reached as ``store.evals``): :class:`SqlEvals` here,
``MemoryEvals`` in ``store/memory_evals.py``. The ``eval_runs`` table is the runs' queue:
:meth:`EvalRecords.claim_run` takes a queued run, or an
``in_progress`` one whose heartbeat is older than the timeout (its executor's process is gone), with
one conditional ``UPDATE`` per candidate, so two API processes never hold the same run. Every write an
executor makes afterwards is conditional on still holding it (``worker_id``, ``in_progress``), so a
cancelled or taken-over run gets nothing more from its former holder. Output items are unique per
(run, data source item): an item graded twice (a takeover) keeps its first row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from openft.errors import NotFound
from openft.store import schema as s

QUEUED = "queued"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
CANCELED = "canceled"
ACTIVE = (QUEUED, IN_PROGRESS)
RUN_STATUSES = (QUEUED, IN_PROGRESS, COMPLETED, FAILED, CANCELED)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


class EvalNotFound(NotFound):
    """No such eval."""

    default_code = "eval_not_found"


class EvalRunNotFound(NotFound):
    """No such eval run."""

    default_code = "eval_run_not_found"


class OutputItemNotFound(NotFound):
    """No such eval run output item."""

    default_code = "eval_run_output_item_not_found"


@dataclass
class EvalRow:
    id: str
    organization_id: str
    name: str
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    created_at: int
    project_id: str | None = None
    metadata: dict[str, str] | None = None


@dataclass
class EvalRunRow:
    id: str
    eval_id: str
    organization_id: str
    name: str
    status: str
    data_source: dict[str, Any]
    created_at: int
    project_id: str | None = None
    model: str | None = None
    metadata: dict[str, str] | None = None
    error: dict[str, str] | None = None
    result_counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "passed": 0, "failed": 0, "errored": 0})
    per_testing_criteria_results: list[dict[str, Any]] = field(default_factory=list)
    per_model_usage: list[dict[str, Any]] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    heartbeat_at: float | None = None
    attempts: int = 0


@dataclass
class OutputItemRow:
    id: str
    run_id: str
    eval_id: str
    datasource_item_id: int
    datasource_item: dict[str, Any]
    status: str
    results: list[dict[str, Any]]
    sample: dict[str, Any]
    created_at: int


def eval_not_found(eval_id: str) -> EvalNotFound:
    return EvalNotFound(f"Eval with id '{eval_id}' not found.", param="eval_id")


def run_not_found(run_id: str) -> EvalRunNotFound:
    return EvalRunNotFound(f"Run with id '{run_id}' not found.", param="run_id")


def output_item_not_found(item_id: str) -> OutputItemNotFound:
    return OutputItemNotFound(f"Output item with id '{item_id}' not found.", param="output_item_id")


class EvalRecords(Protocol):
    """Evals, their runs (the runs' queue) and the runs' output items.

    Evals and runs are scoped by ``organization_id``: another organization's row is absent. Listings are
    pages ``(rows, has_more)`` in creation order (``order`` ``asc``) or newest first, ``after`` naming the
    last row of the previous page among the same organization's evals, the same eval's runs or the same
    run's items (any other cursor gives the first page).
    """

    # -- evals -------------------------------------------------------------------------------
    def insert_eval(self, row: EvalRow) -> None: ...

    def get_eval(self, eval_id: str, organization_id: str) -> EvalRow:
        """Raises: EvalNotFound: absent or another organization's."""
        ...

    def update_eval(self, eval_id: str, organization_id: str, **values: Any) -> EvalRow:
        """Set ``values`` on the eval; the eval as it is now.

        Raises:
            EvalNotFound: absent or another organization's.
        """
        ...

    def list_evals(
        self, organization_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[EvalRow], bool]: ...

    def delete_eval(self, eval_id: str, organization_id: str) -> None:
        """The eval, its runs (an active one stops at its next heartbeat) and their output items.

        Raises:
            EvalNotFound: absent or another organization's.
        """
        ...

    # -- runs --------------------------------------------------------------------------------
    def insert_run(self, row: EvalRunRow) -> None: ...

    def get_run(self, run_id: str, organization_id: str, eval_id: str | None = None) -> EvalRunRow:
        """Raises: EvalRunNotFound: absent, another organization's, or not a run of ``eval_id``."""
        ...

    def list_runs(
        self, eval_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> tuple[list[EvalRunRow], bool]:
        """The eval's runs (the caller has checked the eval is the organization's), ``status`` ones only if given."""
        ...

    def cancel_run(self, run_id: str, organization_id: str, eval_id: str) -> EvalRunRow:
        """Cancel a queued or running run; a finished run is returned as it is.

        Raises:
            EvalRunNotFound: as :meth:`get_run`.
        """
        ...

    def delete_run(self, run_id: str, organization_id: str, eval_id: str) -> None:
        """The run and its output items. Raises: EvalRunNotFound: as :meth:`get_run`."""
        ...

    def claim_run(self, worker_id: str, *, stale_before: float) -> EvalRunRow | None:
        """Atomically take the oldest queued run, or a running one whose heartbeat is older than
        ``stale_before`` (one never heartbeaten is not stale): ``in_progress``, held by ``worker_id``, one
        more attempt, ``started_at`` kept from its first claim. None when there is nothing to take."""
        ...

    def hold_run(self, run_id: str, worker_id: str, **values: Any) -> bool:
        """Heartbeat (and write ``values``) while ``worker_id`` still holds the running run; False when
        it no longer does (cancelled, deleted, taken over)."""
        ...

    def finish_run(self, run_id: str, worker_id: str, status: str, **values: Any) -> bool:
        """Move the held run to ``status`` (completed or failed) with its results; False if no longer held."""
        ...

    # -- output items ------------------------------------------------------------------------
    def add_output_item(self, row: OutputItemRow) -> bool:
        """False when the run already has an item for this data source item (kept as it was)."""
        ...

    def graded_item_ids(self, run_id: str) -> set[int]:
        """The data source items the run has an output item for."""
        ...

    def all_output_items(self, run_id: str) -> list[OutputItemRow]:
        """Every output item of the run, by data source item."""
        ...

    def list_output_items(
        self, run_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> tuple[list[OutputItemRow], bool]: ...

    def get_output_item(self, item_id: str, run_id: str) -> OutputItemRow:
        """Raises: OutputItemNotFound: no such item in the run."""
        ...


def _row(cls: type[R], row: Any) -> R:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _page(rows: Sequence[Any], cls: type[R], limit: int) -> tuple[list[R], bool]:
    return [_row(cls, r) for r in rows[:limit]], len(rows) > limit


class SqlEvals:
    """:class:`EvalRecords` in the ``evals``, ``eval_runs`` and ``eval_output_items`` tables."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- evals -------------------------------------------------------------------------------
    def insert_eval(self, row: EvalRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.evals).values(**asdict(row)))

    def get_eval(self, eval_id: str, organization_id: str) -> EvalRow:
        t = s.evals
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == eval_id, t.c.organization_id == organization_id)).first()
        if row is None:
            raise eval_not_found(eval_id)
        return _row(EvalRow, row)

    def update_eval(self, eval_id: str, organization_id: str, **values: Any) -> EvalRow:
        t = s.evals
        with self.engine.begin() as conn:
            if values:
                conn.execute(
                    update(t).where(t.c.id == eval_id, t.c.organization_id == organization_id).values(**values)
                )
        return self.get_eval(eval_id, organization_id)

    def list_evals(
        self, organization_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[EvalRow], bool]:
        t = s.evals
        query = select(t).where(t.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            if after is not None:
                cursor = conn.execute(
                    select(t.c.seq).where(t.c.id == after, t.c.organization_id == organization_id)
                ).scalar()
                if cursor is not None:
                    query = query.where(t.c.seq > cursor if order == "asc" else t.c.seq < cursor)
            query = query.order_by(t.c.seq.asc() if order == "asc" else t.c.seq.desc()).limit(limit + 1)
            return _page(conn.execute(query).all(), EvalRow, limit)

    def delete_eval(self, eval_id: str, organization_id: str) -> None:
        self.get_eval(eval_id, organization_id)
        with self.engine.begin() as conn:
            conn.execute(delete(s.eval_output_items).where(s.eval_output_items.c.eval_id == eval_id))
            conn.execute(delete(s.eval_runs).where(s.eval_runs.c.eval_id == eval_id))
            conn.execute(delete(s.evals).where(s.evals.c.id == eval_id))

    # -- runs --------------------------------------------------------------------------------
    def insert_run(self, row: EvalRunRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.eval_runs).values(**asdict(row)))

    def get_run(self, run_id: str, organization_id: str, eval_id: str | None = None) -> EvalRunRow:
        t = s.eval_runs
        query = select(t).where(t.c.id == run_id, t.c.organization_id == organization_id)
        if eval_id is not None:
            query = query.where(t.c.eval_id == eval_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise run_not_found(run_id)
        return _row(EvalRunRow, row)

    def list_runs(
        self, eval_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> tuple[list[EvalRunRow], bool]:
        t = s.eval_runs
        query = select(t).where(t.c.eval_id == eval_id)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.engine.connect() as conn:
            if after is not None:
                cursor = conn.execute(select(t.c.seq).where(t.c.id == after, t.c.eval_id == eval_id)).scalar()
                if cursor is not None:
                    query = query.where(t.c.seq > cursor if order == "asc" else t.c.seq < cursor)
            query = query.order_by(t.c.seq.asc() if order == "asc" else t.c.seq.desc()).limit(limit + 1)
            return _page(conn.execute(query).all(), EvalRunRow, limit)

    def cancel_run(self, run_id: str, organization_id: str, eval_id: str) -> EvalRunRow:
        # The executor stops at its next heartbeat, which finds the run no longer in progress.
        t = s.eval_runs
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id == run_id, t.c.organization_id == organization_id, t.c.status.in_(ACTIVE))
                .values(status=CANCELED, finished_at=time.time())
            )
        return self.get_run(run_id, organization_id, eval_id)

    def delete_run(self, run_id: str, organization_id: str, eval_id: str) -> None:
        self.get_run(run_id, organization_id, eval_id)
        with self.engine.begin() as conn:
            conn.execute(delete(s.eval_output_items).where(s.eval_output_items.c.run_id == run_id))
            conn.execute(delete(s.eval_runs).where(s.eval_runs.c.id == run_id))

    def claim_run(self, worker_id: str, *, stale_before: float) -> EvalRunRow | None:
        # One conditional UPDATE per candidate: of two executors racing for a run, one changes the row.
        t = s.eval_runs
        claimable = (t.c.status == QUEUED) | ((t.c.status == IN_PROGRESS) & (t.c.heartbeat_at < stale_before))
        with self.engine.connect() as conn:
            candidates = conn.execute(select(t.c.id).where(claimable).order_by(t.c.seq).limit(8)).scalars().all()
        now = time.time()
        for run_id in candidates:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(t)
                    .where(t.c.id == run_id, claimable)
                    .values(status=IN_PROGRESS, worker_id=worker_id, heartbeat_at=now, attempts=t.c.attempts + 1)
                )
                if taken.rowcount == 1:
                    conn.execute(update(t).where(t.c.id == run_id, t.c.started_at.is_(None)).values(started_at=now))
                    row = conn.execute(select(t).where(t.c.id == run_id)).first()
                    return _row(EvalRunRow, row)
        return None

    def hold_run(self, run_id: str, worker_id: str, **values: Any) -> bool:
        t = s.eval_runs
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t)
                .where(t.c.id == run_id, t.c.worker_id == worker_id, t.c.status == IN_PROGRESS)
                .values(heartbeat_at=time.time(), **values)
            )
        return result.rowcount == 1

    def finish_run(self, run_id: str, worker_id: str, status: str, **values: Any) -> bool:
        return self.hold_run(run_id, worker_id, status=status, finished_at=time.time(), **values)

    # -- output items ------------------------------------------------------------------------
    def add_output_item(self, row: OutputItemRow) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(s.eval_output_items).values(**asdict(row)))
        except IntegrityError:
            return False
        return True

    def graded_item_ids(self, run_id: str) -> set[int]:
        t = s.eval_output_items
        with self.engine.connect() as conn:
            return set(conn.execute(select(t.c.datasource_item_id).where(t.c.run_id == run_id)).scalars())

    def all_output_items(self, run_id: str) -> list[OutputItemRow]:
        t = s.eval_output_items
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.datasource_item_id)).all()
        return [_row(OutputItemRow, r) for r in rows]

    def list_output_items(
        self, run_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> tuple[list[OutputItemRow], bool]:
        t = s.eval_output_items
        query = select(t).where(t.c.run_id == run_id)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.engine.connect() as conn:
            if after is not None:
                cursor = conn.execute(select(t.c.seq).where(t.c.id == after, t.c.run_id == run_id)).scalar()
                if cursor is not None:
                    query = query.where(t.c.seq > cursor if order == "asc" else t.c.seq < cursor)
            query = query.order_by(t.c.seq.asc() if order == "asc" else t.c.seq.desc()).limit(limit + 1)
            return _page(conn.execute(query).all(), OutputItemRow, limit)

    def get_output_item(self, item_id: str, run_id: str) -> OutputItemRow:
        t = s.eval_output_items
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == item_id, t.c.run_id == run_id)).first()
        if row is None:
            raise output_item_not_found(item_id)
        return _row(OutputItemRow, row)
