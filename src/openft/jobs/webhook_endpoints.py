"""WebhookEndpoints: an organization's webhook endpoints and their deliveries, for the API and the CLI.

Creating an endpoint checks its event types and, last (it resolves the host), its URL against the egress
policy (``jobs/egress.py``); every delivery checks the URL again, since what a name resolves to can change.
"""

from __future__ import annotations

from openft.errors import InvalidRequest
from openft.jobs import egress, webhooks
from openft.settings import Settings
from openft.store.base import Store
from openft.store.webhooks import WebhookDeliveryRow, WebhookEndpointRow
from openft.tenancy import Principal

MAX_DELIVERIES = 1000


class WebhookEndpoints:
    """Endpoints of the caller's organization (another organization's are absent: 404)."""

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.records = store.webhooks

    def create(self, principal: Principal, url: str, events: list[str] | None) -> WebhookEndpointRow:
        """A new endpoint, with its signing secret.

        Raises:
            InvalidRequest: an unknown event type, or a URL the egress policy refuses.
        """
        known = set(webhooks.EVENT_TYPES.values())
        unknown = [e for e in events or [] if e not in known]
        if unknown:
            raise InvalidRequest(
                f"Unknown event type '{unknown[0]}'; expected one of {', '.join(sorted(known))}.", param="events"
            )
        egress.EgressPolicy(allow_private_addresses=self.settings.webhook_allow_private_addresses).check(url)
        row = webhooks.new_endpoint(principal.organization_id, url, events)
        self.records.add_endpoint(row)
        return row

    def get(self, principal: Principal, endpoint_id: str) -> WebhookEndpointRow:
        """Raises: WebhookEndpointNotFound: no such endpoint in the caller's organization."""
        return self.records.get_endpoint(endpoint_id, principal.organization_id)

    def delete(self, principal: Principal, endpoint_id: str) -> None:
        """Raises: WebhookEndpointNotFound: as :meth:`get`."""
        self.records.delete_endpoint(endpoint_id, principal.organization_id)

    def deliveries(self, principal: Principal, endpoint_id: str, limit: int) -> list[WebhookDeliveryRow]:
        """The endpoint's deliveries, newest first (``limit`` clamped to 1..1000).

        Raises:
            WebhookEndpointNotFound: as :meth:`get`.
        """
        self.get(principal, endpoint_id)
        return self.records.list_deliveries(endpoint_id, limit=max(1, min(limit, MAX_DELIVERIES)))

    def list(self, principal: Principal) -> list[WebhookEndpointRow]:
        """Oldest first."""
        return self.records.list_endpoints(principal.organization_id)
