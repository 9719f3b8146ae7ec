"""MemoryEvals: :class:`~openft.store.evals.EvalRecords` in memory, sharing an in-memory store's state.

It follows ``SqlEvals`` (checked by the shared contract suite): organization scoping, pages with scoped
cursors, the runs' queue (the oldest queued run, or a running one gone stale; a run never heartbeaten is
not stale, as ``NULL < x`` is not true in SQL), writes conditional on still holding a run, and one output
item per (run, data source item).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from openft.store.evals import (
    ACTIVE,
    CANCELED,
    IN_PROGRESS,
    QUEUED,
    EvalRow,
    EvalRunRow,
    OutputItemRow,
    eval_not_found,
    output_item_not_found,
    run_not_found,
)
from openft.store.memory_records import MemoryState, Table, cursor_page, out, replace

EVALS, RUNS, ITEMS = "evals", "eval_runs", "eval_output_items"


class MemoryEvals:
    """:class:`~openft.store.evals.EvalRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _evals(self) -> Table[EvalRow]:
        return self.state.table(EVALS)

    @property
    def _runs(self) -> Table[EvalRunRow]:
        return self.state.table(RUNS)

    @property
    def _items(self) -> Table[OutputItemRow]:
        return self.state.table(ITEMS)

    # -- evals -------------------------------------------------------------------------------
    def insert_eval(self, row: EvalRow) -> None:
        with self.state.lock:
            self.state.insert(EVALS, row.id, row)

    def get_eval(self, eval_id: str, organization_id: str) -> EvalRow:
        with self.state.lock:
            row = self._evals.row(eval_id)
        if row is None or row.organization_id != organization_id:
            raise eval_not_found(eval_id)
        return out(row)

    def update_eval(self, eval_id: str, organization_id: str, **values: Any) -> EvalRow:
        with self.state.lock:
            row = self.get_eval(eval_id, organization_id)
            self._evals.put(eval_id, replace(row, **values))
            return self.get_eval(eval_id, organization_id)

    def list_evals(
        self, organization_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[EvalRow], bool]:
        def owned(row: EvalRow) -> bool:
            return row.organization_id == organization_id

        with self.state.lock:
            return cursor_page(self._evals, where=owned, scope=owned, after=after, limit=limit, order=order)

    def delete_eval(self, eval_id: str, organization_id: str) -> None:
        with self.state.lock:
            self.get_eval(eval_id, organization_id)
            self._drop(self._items, lambda item: item.eval_id == eval_id)
            self._drop(self._runs, lambda run: run.eval_id == eval_id)
            del self._evals[eval_id]

    @staticmethod
    def _drop(table: Table[Any], doomed: Callable[[Any], bool]) -> None:
        for row_id in [k for k, (_, row) in table.items() if doomed(row)]:
            del table[row_id]

    # -- runs --------------------------------------------------------------------------------
    def insert_run(self, row: EvalRunRow) -> None:
        with self.state.lock:
            self.state.insert(RUNS, row.id, row)

    def get_run(self, run_id: str, organization_id: str, eval_id: str | None = None) -> EvalRunRow:
        with self.state.lock:
            row = self._runs.row(run_id)
        if row is None or row.organization_id != organization_id or eval_id not in (None, row.eval_id):
            raise run_not_found(run_id)
        return out(row)

    def list_runs(
        self, eval_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> tuple[list[EvalRunRow], bool]:
        def of_eval(row: EvalRunRow) -> bool:
            return row.eval_id == eval_id

        def wanted(row: EvalRunRow) -> bool:
            return of_eval(row) and status in (None, row.status)

        with self.state.lock:
            return cursor_page(self._runs, where=wanted, scope=of_eval, after=after, limit=limit, order=order)

    def cancel_run(self, run_id: str, organization_id: str, eval_id: str) -> EvalRunRow:
        with self.state.lock:
            row = self._runs.row(run_id)
            if row is not None and row.organization_id == organization_id and row.status in ACTIVE:
                self._runs.put(run_id, replace(row, status=CANCELED, finished_at=time.time()))
            return self.get_run(run_id, organization_id, eval_id)

    def delete_run(self, run_id: str, organization_id: str, eval_id: str) -> None:
        with self.state.lock:
            self.get_run(run_id, organization_id, eval_id)
            self._drop(self._items, lambda item: item.run_id == run_id)
            del self._runs[run_id]

    def claim_run(self, worker_id: str, *, stale_before: float) -> EvalRunRow | None:
        def claimable(row: EvalRunRow) -> bool:
            stale = row.heartbeat_at is not None and row.heartbeat_at < stale_before
            return row.status == QUEUED or (row.status == IN_PROGRESS and stale)

        with self.state.lock:
            row = next((r for r in self._runs.ordered() if claimable(r)), None)
            if row is None:
                return None
            now = time.time()
            taken = replace(
                row,
                status=IN_PROGRESS,
                worker_id=worker_id,
                heartbeat_at=now,
                attempts=row.attempts + 1,
                started_at=now if row.started_at is None else row.started_at,
            )
            self._runs.put(row.id, taken)
            return out(taken)

    def hold_run(self, run_id: str, worker_id: str, **values: Any) -> bool:
        with self.state.lock:
            row = self._runs.row(run_id)
            if row is None or row.worker_id != worker_id or row.status != IN_PROGRESS:
                return False
            self._runs.put(run_id, replace(row, heartbeat_at=time.time(), **values))
            return True

    def finish_run(self, run_id: str, worker_id: str, status: str, **values: Any) -> bool:
        return self.hold_run(run_id, worker_id, status=status, finished_at=time.time(), **values)

    # -- output items ------------------------------------------------------------------------
    def add_output_item(self, row: OutputItemRow) -> bool:
        with self.state.lock:
            taken = any(
                item.run_id == row.run_id and item.datasource_item_id == row.datasource_item_id
                for _, item in self._items.values()
            )
            if taken or row.id in self._items:
                return False
            self.state.insert(ITEMS, row.id, row)
            return True

    def graded_item_ids(self, run_id: str) -> set[int]:
        with self.state.lock:
            return {item.datasource_item_id for _, item in self._items.values() if item.run_id == run_id}

    def all_output_items(self, run_id: str) -> list[OutputItemRow]:
        with self.state.lock:
            items = [out(item) for _, item in self._items.values() if item.run_id == run_id]
        return sorted(items, key=lambda item: item.datasource_item_id)

    def list_output_items(
        self, run_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> tuple[list[OutputItemRow], bool]:
        def of_run(row: OutputItemRow) -> bool:
            return row.run_id == run_id

        def wanted(row: OutputItemRow) -> bool:
            return of_run(row) and status in (None, row.status)

        with self.state.lock:
            return cursor_page(self._items, where=wanted, scope=of_run, after=after, limit=limit, order=order)

    def get_output_item(self, item_id: str, run_id: str) -> OutputItemRow:
        with self.state.lock:
            row = self._items.row(item_id)
        if row is None or row.run_id != run_id:
            raise output_item_not_found(item_id)
        return out(row)
