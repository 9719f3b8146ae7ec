"""Persistence of webhook endpoints (per organization) and the deliveries outbox."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from openft import ids
from openft.errors import NotFound
from openft.store import schema as s

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


def _row(cls: type[Any], row: Any) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def queue_event_deliveries(
    conn: Connection, *, organization_id: str, event_type: str, event_id: str, payload: str, now: float
) -> int:
    """Write the outbox rows of one event on ``conn``: one per endpoint of ``organization_id`` that takes
    ``event_type``. Runs inside the transaction that changes the job, so the event is queued exactly
    when that change commits. Returns how many rows were written."""
    t = s.webhook_endpoints
    query = select(t).where(t.c.organization_id == organization_id).order_by(t.c.seq)
    endpoints = [e for e in conn.execute(query) if not e.events or event_type in e.events]
    rows = [
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
    ]
    if rows:
        conn.execute(insert(s.webhook_deliveries), [asdict(r) for r in rows])
    return len(rows)


class WebhookStore:
    """Endpoints and deliveries on the same database engine as the main ``Store``."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- endpoints -----------------------------------------------------------------------------
    def add_endpoint(self, row: WebhookEndpointRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(s.webhook_endpoints).values(**asdict(row)))

    def list_endpoints(self, organization_id: str) -> list[WebhookEndpointRow]:
        query = (
            select(s.webhook_endpoints)
            .where(s.webhook_endpoints.c.organization_id == organization_id)
            .order_by(s.webhook_endpoints.c.seq)
        )
        with self.engine.connect() as conn:
            return [_row(WebhookEndpointRow, r) for r in conn.execute(query)]

    def get_endpoint(self, endpoint_id: str, organization_id: str | None = None) -> WebhookEndpointRow:
        """Raises WebhookEndpointNotFound when absent or owned by another organization."""
        query = select(s.webhook_endpoints).where(s.webhook_endpoints.c.id == endpoint_id)
        if organization_id is not None:
            query = query.where(s.webhook_endpoints.c.organization_id == organization_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise WebhookEndpointNotFound(f"No webhook endpoint found with id '{endpoint_id}'.", param="webhook_id")
        return _row(WebhookEndpointRow, row)  # type: ignore[no-any-return]

    def delete_endpoint(self, endpoint_id: str, organization_id: str) -> None:
        self.get_endpoint(endpoint_id, organization_id)
        with self.engine.begin() as conn:
            conn.execute(delete(s.webhook_endpoints).where(s.webhook_endpoints.c.id == endpoint_id))

    # -- deliveries ----------------------------------------------------------------------------
    def list_deliveries(self, endpoint_id: str, limit: int = 100) -> list[WebhookDeliveryRow]:
        """Newest first."""
        t = s.webhook_deliveries
        query = select(t).where(t.c.endpoint_id == endpoint_id).order_by(t.c.seq.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_row(WebhookDeliveryRow, r) for r in conn.execute(query)]

    def claim_due(self, now: float, lease_seconds: float, limit: int = 20) -> list[WebhookDeliveryRow]:
        """Pending deliveries whose time has come, each leased to the caller by pushing its next attempt
        ``lease_seconds`` ahead (a compare-and-set, so two workers never send the same attempt)."""
        t = s.webhook_deliveries
        query = select(t).where(and_(t.c.status == PENDING, t.c.next_attempt_at <= now)).order_by(t.c.seq).limit(limit)
        claimed: list[WebhookDeliveryRow] = []
        with self.engine.begin() as conn:
            for r in conn.execute(query).all():
                done = conn.execute(
                    update(t)
                    .where(and_(t.c.id == r.id, t.c.next_attempt_at == r.next_attempt_at, t.c.status == PENDING))
                    .values(next_attempt_at=now + lease_seconds)
                )
                if done.rowcount == 1:
                    claimed.append(_row(WebhookDeliveryRow, r))
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
        now = time.time()
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
        with self.engine.begin() as conn:
            conn.execute(update(s.webhook_deliveries).where(s.webhook_deliveries.c.id == delivery_id).values(**values))
