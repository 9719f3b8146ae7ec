"""/v1/organization/webhooks: the caller's organization's webhook endpoints and their deliveries.

openft-specific (OpenAI configures webhooks in its dashboard). Creating an endpoint returns its
signing secret (``whsec_…``) once; listings never show it again. A URL the egress policy refuses
(``jobs/egress.py``: a private, loopback or metadata address, or a malformed URL) is a 400 on ``url``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from openft.api.deps import PrincipalDep, SettingsDep, StoreDep
from openft.errors import InvalidRequest
from openft.jobs import egress, webhooks
from openft.store.webhooks import WebhookEndpointRow, WebhookStore

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
    principal: PrincipalDep, settings: SettingsDep, store: StoreDep, params: WebhookEndpointCreateParams
) -> dict[str, Any]:
    known = set(webhooks.EVENT_TYPES.values())
    unknown = [e for e in params.events or [] if e not in known]
    if unknown:
        raise InvalidRequest(
            f"Unknown event type '{unknown[0]}'; expected one of {', '.join(sorted(known))}.", param="events"
        )
    # Last, as it resolves the host; every delivery checks again (what a name resolves to can change).
    egress.EgressPolicy(allow_private_addresses=settings.webhook_allow_private_addresses).check(params.url)
    row = webhooks.new_endpoint(principal.organization_id, params.url, params.events)
    WebhookStore(store.engine).add_endpoint(row)
    return endpoint_to_wire(row, with_secret=True)


@router.get("")
def list_endpoints(principal: PrincipalDep, store: StoreDep) -> dict[str, Any]:
    rows = WebhookStore(store.engine).list_endpoints(principal.organization_id)
    return {"object": "list", "data": [endpoint_to_wire(r) for r in rows], "has_more": False}


@router.get("/{webhook_id}")
def retrieve_endpoint(principal: PrincipalDep, store: StoreDep, webhook_id: str) -> dict[str, Any]:
    return endpoint_to_wire(WebhookStore(store.engine).get_endpoint(webhook_id, principal.organization_id))


@router.delete("/{webhook_id}")
def delete_endpoint(principal: PrincipalDep, store: StoreDep, webhook_id: str) -> dict[str, Any]:
    WebhookStore(store.engine).delete_endpoint(webhook_id, principal.organization_id)
    return {"id": webhook_id, "object": "webhook_endpoint.deleted", "deleted": True}


@router.get("/{webhook_id}/deliveries")
def list_deliveries(principal: PrincipalDep, store: StoreDep, webhook_id: str, limit: int = 100) -> dict[str, Any]:
    ws = WebhookStore(store.engine)
    ws.get_endpoint(webhook_id, principal.organization_id)
    rows = ws.list_deliveries(webhook_id, limit=max(1, min(limit, 1000)))
    return {"object": "list", "data": [webhooks.delivery_view(r) for r in rows], "has_more": False}
