"""The memory twins of the stored answers: Responses API objects and chat completions (``store: true``).

Each shares an in-memory store's state and follows its SQL twin (``store/responses.py``,
``store/completions.py``), checked by the shared contract suite: organization scoping, pages in both
orders with cursors, and errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from openft.store.completions import CompletionFilter, StoredCompletionRow, completion_not_found, matches
from openft.store.memory_records import MemoryState, Table, cursor_page, out, replace
from openft.store.responses import StoredResponse, response_not_found, unknown_input_item

RESPONSES, COMPLETIONS = "responses", "stored_completions"


@dataclass(frozen=True)
class _Response:
    organization_id: str
    project_id: str | None
    stored: StoredResponse


class MemoryResponses:
    """:class:`~openft.store.responses.ResponseRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _table(self) -> Table[_Response]:
        return self.state.table(RESPONSES)

    def _find(self, response_id: str, organization_id: str, param: str) -> StoredResponse:
        with self.state.lock:
            row = self._table.row(response_id)
        if row is None or row.organization_id != organization_id:
            raise response_not_found(response_id, param)
        return out(row.stored)

    def insert(
        self, body: dict[str, Any], input_items: list[dict[str, Any]], *, organization_id: str, project_id: str | None
    ) -> None:
        row = _Response(organization_id, project_id, StoredResponse(body=body, input_items=input_items))
        with self.state.lock:
            self.state.insert(RESPONSES, body["id"], row)

    def get(self, response_id: str, organization_id: str, *, param: str = "response_id") -> dict[str, Any]:
        return self._find(response_id, organization_id, param).body

    def conversation(self, response_id: str, organization_id: str, *, param: str) -> StoredResponse:
        return self._find(response_id, organization_id, param)

    def delete(self, response_id: str, organization_id: str) -> None:
        with self.state.lock:
            self._find(response_id, organization_id, "response_id")
            del self._table[response_id]

    def input_items(
        self,
        response_id: str,
        organization_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> tuple[list[dict[str, Any]], bool]:
        items = self._find(response_id, organization_id, "response_id").input_items
        if order == "desc":
            items.reverse()
        if after is not None:
            at = next((i for i, item in enumerate(items) if item["id"] == after), None)
            if at is None:
                raise unknown_input_item(after, response_id)
            items = items[at + 1 :]
        return items[:limit], len(items) > limit


class MemoryCompletions:
    """:class:`~openft.store.completions.CompletionRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _table(self) -> Table[StoredCompletionRow]:
        return self.state.table(COMPLETIONS)

    def insert(self, row: StoredCompletionRow) -> None:
        with self.state.lock:
            self.state.insert(COMPLETIONS, row.id, row)

    def get(self, completion_id: str, organization_id: str) -> StoredCompletionRow:
        with self.state.lock:
            row = self._table.row(completion_id)
        if row is None or row.organization_id != organization_id:
            raise completion_not_found(completion_id)
        return out(row)

    def page(
        self, organization_id: str, where: CompletionFilter, *, after: str | None, limit: int, order: str
    ) -> tuple[list[StoredCompletionRow], bool]:
        def owned(row: StoredCompletionRow) -> bool:
            return row.organization_id == organization_id

        def wanted(row: StoredCompletionRow) -> bool:
            return owned(row) and matches(row, where)

        with self.state.lock:
            return cursor_page(self._table, where=wanted, scope=owned, after=after, limit=limit, order=order)

    def select(self, organization_id: str, where: CompletionFilter, *, limit: int | None) -> list[StoredCompletionRow]:
        with self.state.lock:
            rows = [r for r in self._table.ordered() if r.organization_id == organization_id and matches(r, where)]
        return [out(r) for r in rows[:limit]]

    def update_metadata(
        self, completion_id: str, organization_id: str, metadata: dict[str, str] | None
    ) -> StoredCompletionRow:
        with self.state.lock:
            row = replace(self.get(completion_id, organization_id), metadata=metadata)
            self._table.put(completion_id, row)
            return out(row)

    def delete(self, completion_id: str, organization_id: str) -> None:
        with self.state.lock:
            self.get(completion_id, organization_id)
            del self._table[completion_id]
