"""/v1/organization/webhooks: the caller's organization's webhook endpoints and their deliveries.

openft-specific (OpenAI configures webhooks in its dashboard). Creating an endpoint returns its
signing secret (``whsec_…``) once; listings never show it again. A URL the egress policy refuses
(``jobs/egress.py``: a private, loopback or metadata address, or a malformed URL) is a 400 on ``url``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from openft.api.deps import PrincipalDep, WebhooksDep
from openft.jobs import webhooks
from openft.store.webhooks import WebhookEndpointRow

router = APIRouter(prefix="/v1/organization/webhooks", tags=["webhooks"])


class WebhookEndpointCreateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2048)
    events: list[str] | None = None
    """Event types to send; all ``fine_tuning.job.*`` events when absent."""


def endpoint_to_wire(row: WebhookEndpointRow, *, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "object": "webhook_endpoint",
        "url": row.url,
        "events": row.events or sorted(webhooks.EVENT_TYPES.values()),
        "created_at": row.created_at,
    }
    if with_secret:
        out["secret"] = row.secret
    return out


@router.post("")
def create_endpoint(
    principal: PrincipalDep, endpoints: WebhooksDep, params: WebhookEndpointCreateParams
) -> dict[str, Any]:
    return endpoint_to_wire(endpoints.create(principal, params.url, params.events), with_secret=True)


@router.get("")
def list_endpoints(principal: PrincipalDep, endpoints: WebhooksDep) -> dict[str, Any]:
    rows = endpoints.list(principal)
    return {"object": "list", "data": [endpoint_to_wire(r) for r in rows], "has_more": False}


@router.get("/{webhook_id}")
def retrieve_endpoint(principal: PrincipalDep, endpoints: WebhooksDep, webhook_id: str) -> dict[str, Any]:
    return endpoint_to_wire(endpoints.get(principal, webhook_id))


@router.delete("/{webhook_id}")
def delete_endpoint(principal: PrincipalDep, endpoints: WebhooksDep, webhook_id: str) -> dict[str, Any]:
    endpoints.delete(principal, webhook_id)
    return {"id": webhook_id, "object": "webhook_endpoint.deleted", "deleted": True}


@router.get("/{webhook_id}/deliveries")
def list_deliveries(
    principal: PrincipalDep, endpoints: WebhooksDep, webhook_id: str, limit: int = 100
) -> dict[str, Any]:
    rows = endpoints.deliveries(principal, webhook_id, limit)
    return {"object": "list", "data": [webhooks.delivery_view(r) for r in rows], "has_more": False}
