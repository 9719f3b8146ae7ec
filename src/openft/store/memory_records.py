"""The memory twins of the satellite seams: API keys, checkpoint permissions, uploads and webhooks
(evals in ``memory_evals.py``; responses and stored chat completions in ``memory_answers.py``).

Each keeps its rows in :class:`MemoryState`, the one state an :class:`~openft.store.memory.InMemoryStore`
shares with them (a job's terminal change writes webhook outbox rows under the same lock), and follows
its SQL twin's semantics: the same ordering, organization scoping, compare-and-set and errors, checked by
the shared contract suite.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from openft.store.base import Conflict
from openft.store.keys import ApiKeyRow
from openft.store.permissions import PermissionRow
from openft.store.uploads import UploadPartRow, UploadRow, upload_not_found
from openft.store.webhooks import (
    PENDING,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    attempt_values,
    delivery_rows,
    endpoint_not_found,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R")
D = TypeVar("D", bound="DataclassInstance")


class Table(dict[str, tuple[int, R]], Generic[R]):
    """Rows by id, each with the ``seq`` it was inserted at."""

    def row(self, row_id: str) -> R | None:
        found = self.get(row_id)
        return found[1] if found is not None else None

    def put(self, row_id: str, row: R) -> None:
        """Replace an existing row, keeping its seq."""
        self[row_id] = (self[row_id][0], row)

    def ordered(self) -> list[R]:
        """Rows in insertion (``seq``) order."""
        return [row for _, row in sorted(self.values(), key=lambda item: item[0])]


class MemoryState:
    """Every table of an in-memory store, one lock and one ``seq`` counter."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._seq = itertools.count(1)
        self.tables: dict[str, Table[Any]] = {}

    def table(self, name: str) -> Table[Any]:
        return self.tables.setdefault(name, Table())

    def next_seq(self) -> int:
        return next(self._seq)

    def insert(self, table: str, row_id: str, row: Any) -> int:
        """Store a copy of ``row`` under ``row_id``; its seq.

        Raises:
            Conflict: ``table`` already has a row with that id.
        """
        rows = self.table(table)
        if row_id in rows:
            raise Conflict(f"{table}: {row_id} exists")
        seq = self.next_seq()
        rows[row_id] = (seq, copy.deepcopy(row))
        return seq


def out(row: R) -> R:
    """A copy for the caller: a row handed out never aliases the stored one, as a row read from SQL."""
    return copy.deepcopy(row)


def replace(row: D, **values: Any) -> D:
    return dataclasses.replace(row, **values)


def cursor_page(
    table: Table[R],
    *,
    where: Callable[[R], bool],
    scope: Callable[[R], bool],
    after: str | None,
    limit: int,
    order: str,
) -> tuple[list[R], bool]:
    """A page of the rows of ``table`` that pass ``where``: in seq order (``order`` ``asc``) or newest
    first, after the row named ``after`` when that row is in ``scope`` (another cursor gives the first
    page, as the SQL twins read a cursor); and whether more follow."""
    found = table.get(after) if after is not None else None
    cursor = found[0] if found is not None and scope(found[1]) else None
    rows = sorted(((seq, row) for seq, row in table.values() if where(row)), key=lambda item: item[0])
    if order != "asc":
        rows.reverse()
    if cursor is not None:
        rows = [(seq, row) for seq, row in rows if (seq > cursor if order == "asc" else seq < cursor)]
    return [out(row) for _, row in rows[:limit]], len(rows) > limit


class MemoryApiKeys:
    """:class:`~openft.store.keys.ApiKeyRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _table(self) -> Table[ApiKeyRow]:
        return self.state.table("api_keys")

    def _rows(self) -> Iterator[ApiKeyRow]:
        return iter(self._table.ordered())

    def insert(self, row: ApiKeyRow) -> None:
        with self.state.lock:
            if any(r.key_hash == row.key_hash for r in self._rows()):
                raise Conflict("api_keys: key_hash exists")
            self.state.insert("api_keys", row.id, row)

    def find_active(self, key_hash: str) -> ApiKeyRow | None:
        with self.state.lock:
            return next((out(r) for r in self._rows() if r.key_hash == key_hash and r.revoked_at is None), None)

    def any_exists(self) -> bool:
        with self.state.lock:
            return bool(self.state.table("api_keys"))

    def list(self, organization_id: str | None, *, include_revoked: bool) -> list[ApiKeyRow]:
        with self.state.lock:
            return [
                out(r)
                for r in self._rows()
                if (organization_id is None or r.organization_id == organization_id)
                and (include_revoked or r.revoked_at is None)
            ]

    def revoke(self, key_id: str, now: int) -> ApiKeyRow | None:
        with self.state.lock:
            row = self._table.row(key_id)
            if row is None or row.revoked_at is not None:
                return None
            row = replace(row, revoked_at=now)
            self._table.put(key_id, row)
            return out(row)


class MemoryPermissions:
    """:class:`~openft.store.permissions.PermissionRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _table(self) -> Table[PermissionRow]:
        return self.state.table("checkpoint_permissions")

    def _rows(self) -> list[PermissionRow]:
        return self._table.ordered()

    def insert(self, rows: list[PermissionRow]) -> None:
        with self.state.lock:
            taken = [r.id for r in rows if r.id in self._table]
            if taken:
                raise Conflict(f"checkpoint_permissions: {taken[0]} exists")
            for row in rows:
                self.state.insert("checkpoint_permissions", row.id, row)

    def revoke(self, model: str, permission_id: str) -> bool:
        with self.state.lock:
            row = self._table.row(permission_id)
            if row is None or row.fine_tuned_model_checkpoint != model:
                return False
            del self._table[permission_id]
            return True

    def allows(self, model: str, organization_id: str, project_id: str) -> bool:
        return bool(self.list(model, grantee=(organization_id, project_id)))

    def shared_with(self, organization_id: str, project_id: str) -> list[PermissionRow]:
        with self.state.lock:
            return [out(r) for r in self._rows() if r.organization_id == organization_id and r.project_id == project_id]

    def list(
        self, model: str, *, grantee: tuple[str, str] | None = None, newest_first: bool = False
    ) -> list[PermissionRow]:
        with self.state.lock:
            rows = [
                out(r)
                for r in self._rows()
                if r.fine_tuned_model_checkpoint == model
                and (grantee is None or (r.organization_id, r.project_id) == grantee)
            ]
        return rows[::-1] if newest_first else rows


class MemoryUploads:
    """:class:`~openft.store.uploads.UploadRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _uploads(self) -> Table[UploadRow]:
        return self.state.table("uploads")

    @property
    def _parts(self) -> Table[UploadPartRow]:
        return self.state.table("upload_parts")

    def insert(self, row: UploadRow) -> None:
        with self.state.lock:
            self.state.insert("uploads", row.id, row)

    def get(self, upload_id: str, organization_id: str) -> UploadRow:
        with self.state.lock:
            row = self._uploads.row(upload_id)
        if row is None or row.organization_id != organization_id:
            raise upload_not_found(upload_id)
        return out(row)

    def set_status(self, upload_id: str, expect: str, status: str, **values: Any) -> bool:
        with self.state.lock:
            row = self._uploads.row(upload_id)
            if row is None or row.status != expect:
                return False
            self._uploads.put(upload_id, replace(row, status=status, **values))
            return True

    def add_part(self, row: UploadPartRow) -> None:
        with self.state.lock:
            self.state.insert("upload_parts", row.id, row)

    def parts(self, upload_id: str) -> list[UploadPartRow]:
        with self.state.lock:
            return [out(p) for p in self._parts.ordered() if p.upload_id == upload_id]

    def bytes_received(self, upload_id: str) -> int:
        return sum(p.bytes for p in self.parts(upload_id))

    def delete_parts(self, upload_id: str) -> None:
        with self.state.lock:
            for part_id in [k for k, (_, p) in self._parts.items() if p.upload_id == upload_id]:
                del self._parts[part_id]

    def pending_expired(self, now: int, limit: int = 100) -> list[UploadRow]:
        with self.state.lock:
            due = [u for u in self._uploads.ordered() if u.status == "pending" and u.expires_at <= now]
        return [out(u) for u in sorted(due, key=lambda u: u.expires_at)[:limit]]


class MemoryWebhooks:
    """:class:`~openft.store.webhooks.WebhookRecords` in memory."""

    def __init__(self, state: MemoryState):
        self.state = state

    @property
    def _endpoints(self) -> Table[WebhookEndpointRow]:
        return self.state.table("webhook_endpoints")

    @property
    def _deliveries(self) -> Table[WebhookDeliveryRow]:
        return self.state.table("webhook_deliveries")

    def add_endpoint(self, row: WebhookEndpointRow) -> None:
        with self.state.lock:
            self.state.insert("webhook_endpoints", row.id, row)

    def list_endpoints(self, organization_id: str) -> list[WebhookEndpointRow]:
        with self.state.lock:
            return [out(e) for e in self._endpoints.ordered() if e.organization_id == organization_id]

    def get_endpoint(self, endpoint_id: str, organization_id: str | None = None) -> WebhookEndpointRow:
        with self.state.lock:
            row = self._endpoints.row(endpoint_id)
        if row is None or organization_id not in (None, row.organization_id):
            raise endpoint_not_found(endpoint_id)
        return out(row)

    def delete_endpoint(self, endpoint_id: str, organization_id: str) -> None:
        with self.state.lock:
            self.get_endpoint(endpoint_id, organization_id)
            del self._endpoints[endpoint_id]

    def queue_deliveries(
        self, *, organization_id: str, event_type: str, event_id: str, payload: str, now: float
    ) -> int:
        """The outbox rows of one event (the caller holds the lock of the job change they belong to)."""
        rows = delivery_rows(
            self.list_endpoints(organization_id),
            organization_id=organization_id,
            event_type=event_type,
            event_id=event_id,
            payload=payload,
            now=now,
        )
        for row in rows:
            self.state.insert("webhook_deliveries", row.id, row)
        return len(rows)

    def list_deliveries(self, endpoint_id: str, limit: int = 100) -> list[WebhookDeliveryRow]:
        with self.state.lock:
            rows = self._deliveries.ordered()
        return [out(d) for d in reversed(rows) if d.endpoint_id == endpoint_id][:limit]

    def claim_due(self, now: float, lease_seconds: float, limit: int = 20) -> list[WebhookDeliveryRow]:
        with self.state.lock:
            due = [d for d in self._deliveries.ordered() if d.status == PENDING and d.next_attempt_at <= now]
            for d in due[:limit]:
                self._deliveries.put(d.id, replace(d, next_attempt_at=now + lease_seconds))
            return [out(d) for d in due[:limit]]

    def record_attempt(
        self,
        delivery_id: str,
        *,
        status: str,
        attempts: int,
        next_attempt_at: float,
        status_code: int | None,
        error: str | None,
    ) -> None:
        values = attempt_values(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            status_code=status_code,
            error=error,
            now=time.time(),
        )
        with self.state.lock:
            row = self._deliveries.row(delivery_id)
            if row is not None:
                self._deliveries.put(delivery_id, replace(row, **values))
