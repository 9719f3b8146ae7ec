"""Persistence of webhook endpoints (per organization) and the deliveries outbox.

Its own small seam, :class:`WebhookRecords` (reached as ``store.webhooks``): :class:`SqlWebhooks` here,
``MemoryWebhooks`` in ``store/memory_records.py``. The outbox rows of a job's terminal change are written
by the core store in that change's transaction (:func:`queue_event_deliveries`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, and_, delete, insert, update

from openft import ids
from openft.errors import NotFound
from openft.store import schema as s
from openft.store.mapper import RowMapper

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


class WebhookEndpointNotFound(NotFound):
    """No such webhook endpoint."""

    default_code = "webhook_endpoint_not_found"


@dataclass
class WebhookEndpointRow:
    id: str
    organization_id: str
    url: str
    secret: str
    created_at: int
    events: list[str] | None = None
    """Event types sent to this endpoint; None: all of them."""


@dataclass
class WebhookDeliveryRow:
    id: str
    event_id: str
    endpoint_id: str
    organization_id: str
    event_type: str
    payload: str
    """The exact JSON body that is signed and sent."""
    status: str
    next_attempt_at: float
    created_at: int
    attempts: int = 0
    last_attempt_at: float | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: int | None = None


ENDPOINTS = RowMapper(WebhookEndpointRow, s.webhook_endpoints)
DELIVERIES = RowMapper(WebhookDeliveryRow, s.webhook_deliveries)


def endpoint_not_found(endpoint_id: str) -> WebhookEndpointNotFound:
    return WebhookEndpointNotFound(f"No webhook endpoint found with id '{endpoint_id}'.", param="webhook_id")


def delivery_rows(
    endpoints: Iterable[WebhookEndpointRow],
    *,
    organization_id: str,
    event_type: str,
    event_id: str,
    payload: str,
    now: float,
) -> list[WebhookDeliveryRow]:
    """The outbox rows of one event: one per endpoint (of ``organization_id``) that takes ``event_type``."""
    return [
        WebhookDeliveryRow(
            id=f"whdel_{ids.new_model_short_id()}{ids.new_model_short_id()}",
            event_id=event_id,
            endpoint_id=e.id,
            organization_id=organization_id,
            event_type=event_type,
            payload=payload,
            status=PENDING,
            next_attempt_at=now,
            created_at=int(now),
        )
        for e in endpoints
        if not e.events or event_type in e.events
    ]


def queue_event_deliveries(
    conn: Connection, *, organization_id: str, event_type: str, event_id: str, payload: str, now: float
) -> int:
    """Write the outbox rows of one event on ``conn`` (:func:`delivery_rows`). Runs inside the transaction
    that changes the job, so the event is queued exactly when that change commits. Returns how many rows
    were written."""
    t = s.webhook_endpoints
    query = ENDPOINTS.select().where(t.c.organization_id == organization_id).order_by(t.c.seq)
    rows = delivery_rows(
        ENDPOINTS.all(conn.execute(query)),
        organization_id=organization_id,
        event_type=event_type,
        event_id=event_id,
        payload=payload,
        now=now,
    )
    if rows:
        conn.execute(insert(s.webhook_deliveries), [DELIVERIES.values(r) for r in rows])
    return len(rows)


def attempt_values(
    *, status: str, attempts: int, next_attempt_at: float, status_code: int | None, error: str | None, now: float
) -> dict[str, Any]:
    """The fields an attempt sets on its delivery."""
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "next_attempt_at": next_attempt_at,
        "last_attempt_at": now,
        "last_status_code": status_code,
        "last_error": error,
    }
    if status == DELIVERED:
        values["delivered_at"] = int(now)
    return values


class WebhookRecords(Protocol):
    """Webhook endpoints and the deliveries outbox."""

    def add_endpoint(self, row: WebhookEndpointRow) -> None: ...

    def list_endpoints(self, organization_id: str) -> list[WebhookEndpointRow]:
        """Oldest first."""
        ...

    def get_endpoint(self, endpoint_id: str, organization_id: str | None = None) -> WebhookEndpointRow:
        """Raises: WebhookEndpointNotFound: absent or owned by another organization."""
        ...

    def delete_endpoint(self, endpoint_id: str, organization_id: str) -> None:
        """Raises: WebhookEndpointNotFound: as :meth:`get_endpoint`."""
        ...

    def list_deliveries(self, endpoint_id: str, limit: int = 100) -> list[WebhookDeliveryRow]:
        """Newest first."""
        ...

    def claim_due(self, now: float, lease_seconds: float, limit: int = 20) -> list[WebhookDeliveryRow]:
        """Pending deliveries whose time has come, oldest first, each leased to the caller by pushing its
        next attempt ``lease_seconds`` ahead (a compare-and-set, so two workers never send the same attempt)."""
        ...

    def record_attempt(
        self,
        delivery_id: str,
        *,
        status: str,
        attempts: int,
        next_attempt_at: float,
        status_code: int | None,
        error: str | None,
    ) -> None: ...


class SqlWebhooks:
    """:class:`WebhookRecords` in the ``webhook_endpoints`` and ``webhook_deliveries`` tables."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- endpoints -----------------------------------------------------------------------------
    def add_endpoint(self, row: WebhookEndpointRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.webhook_endpoints).values(**ENDPOINTS.values(row)))

    def list_endpoints(self, organization_id: str) -> list[WebhookEndpointRow]:
        t = s.webhook_endpoints
        query = ENDPOINTS.select().where(t.c.organization_id == organization_id).order_by(t.c.seq)
        with self.engine.connect() as conn:
            return ENDPOINTS.all(conn.execute(query))

    def get_endpoint(self, endpoint_id: str, organization_id: str | None = None) -> WebhookEndpointRow:
        query = ENDPOINTS.select().where(s.webhook_endpoints.c.id == endpoint_id)
        if organization_id is not None:
            query = query.where(s.webhook_endpoints.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = ENDPOINTS.maybe(conn.execute(query).first())
        if row is None:
            raise endpoint_not_found(endpoint_id)
        return row

    def delete_endpoint(self, endpoint_id: str, organization_id: str) -> None:
        self.get_endpoint(endpoint_id, organization_id)
        with self.engine.begin() as conn:
            conn.execute(delete(s.webhook_endpoints).where(s.webhook_endpoints.c.id == endpoint_id))

    # -- deliveries ----------------------------------------------------------------------------
    def list_deliveries(self, endpoint_id: str, limit: int = 100) -> list[WebhookDeliveryRow]:
        t = s.webhook_deliveries
        query = DELIVERIES.select().where(t.c.endpoint_id == endpoint_id).order_by(t.c.seq.desc()).limit(limit)
        with self.engine.connect() as conn:
            return DELIVERIES.all(conn.execute(query))

    def claim_due(self, now: float, lease_seconds: float, limit: int = 20) -> list[WebhookDeliveryRow]:
        t = s.webhook_deliveries
        due = DELIVERIES.select().where(and_(t.c.status == PENDING, t.c.next_attempt_at <= now))
        claimed: list[WebhookDeliveryRow] = []
        with self.engine.begin() as conn:
            for row in DELIVERIES.all(conn.execute(due.order_by(t.c.seq).limit(limit))):
                done = conn.execute(
                    update(t)
                    .where(and_(t.c.id == row.id, t.c.next_attempt_at == row.next_attempt_at, t.c.status == PENDING))
                    .values(next_attempt_at=now + lease_seconds)
                )
                if done.rowcount == 1:
                    claimed.append(row)
        return claimed

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
        with self.engine.begin() as conn:
            conn.execute(update(s.webhook_deliveries).where(s.webhook_deliveries.c.id == delivery_id).values(**values))
