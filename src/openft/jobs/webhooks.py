"""Webhooks: ``fine_tuning.job.succeeded|failed|cancelled`` sent to each endpoint of the job's organization.

When a job reaches a terminal state, ``jobs/transitions.py`` writes one delivery row per endpoint (an
outbox, in the same transaction as the job's change), and a worker's :class:`WebhookDispatcher` thread sends
them, retrying failures with exponential backoff. Payloads follow OpenAI's ``WebhookFineTuningJob*``
events (``{"id": "evt_…", "object": "event", "type": …, "created_at": …, "data": {"id": job_id}}``)
and are signed by the ``standardwebhooks`` library with the Standard Webhooks scheme that
``openai.OpenAI().webhooks.unwrap`` verifies:
``webhook-signature: v1,base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"))`` where
the key is the base64-decoded part of the endpoint's ``whsec_…`` secret.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import ssl
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from openft import ids
from openft.jobs import egress
from openft.jobs import status as st
from openft.store import Store
from openft.store.webhooks import (
    DELIVERED,
    FAILED,
    PENDING,
    WebhookDeliveryRow,
    WebhookEndpointNotFound,
    WebhookEndpointRow,
)

log = logging.getLogger(__name__)

EVENT_TYPES = {
    st.SUCCEEDED: "fine_tuning.job.succeeded",
    st.FAILED: "fine_tuning.job.failed",
    st.CANCELLED: "fine_tuning.job.cancelled",
}
MAX_ATTEMPTS = 8
"""Attempts before a delivery is given up (about 21 minutes of retries at the default backoff)."""
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 3600.0
SEND_TIMEOUT_SECONDS = 10.0
LEASE_SECONDS = 60.0
MAX_ERROR_CHARS = 1000


def new_secret() -> str:
    """A signing secret in the Standard Webhooks format: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for ``body``."""
    return Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, tz=UTC), body)


def signed_headers(secret: str, message_id: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, message_id, ts, body),
    }


def backoff_seconds(attempts: int, base: float = BACKOFF_BASE_SECONDS) -> float:
    """Delay before attempt ``attempts + 1``: base, 2x base, 4x base, ... capped at an hour."""
    return float(min(BACKOFF_MAX_SECONDS, base * 2 ** max(attempts - 1, 0)))


def new_endpoint(organization_id: str, url: str, events: list[str] | None = None) -> WebhookEndpointRow:
    return WebhookEndpointRow(
        id=f"we_{ids.new_model_short_id()}{ids.new_model_short_id()}",
        organization_id=organization_id,
        url=url,
        secret=new_secret(),
        created_at=int(time.time()),
        events=events,
    )


class WebhookDispatcher:
    """Sends due deliveries; ``run`` loops until stopped (a worker runs it in its own thread).

    Each attempt checks the endpoint's URL with the egress policy after resolving its host, and sends to
    an address that was checked. Whatever goes wrong with one delivery (a malformed or refused URL, DNS,
    TLS, a timeout, anything raised) is recorded on that delivery and retried on its schedule; the other
    deliveries go on.
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_seconds: float = 1.0,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        allow_private_addresses: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ):
        """``allow_private_addresses``: the ``webhook_allow_private_addresses`` setting. ``ssl_context``:
        the certificates https endpoints are verified against; default certifi's, or ``SSL_CERT_FILE``."""
        self.webhooks = store.webhooks
        self.poll_seconds = poll_seconds
        self.backoff_base = backoff_base
        self.max_attempts = max_attempts
        self.egress = egress.EgressPolicy(allow_private_addresses=allow_private_addresses)
        if allow_private_addresses:
            log.warning(
                "OPENFT_WEBHOOK_ALLOW_PRIVATE_ADDRESSES is on: webhooks may be sent to loopback, private and "
                "link-local addresses, so any organization's endpoint can reach this host's network"
            )
        # No redirects (a 3xx could point anywhere), no proxy from the environment (it would connect, not
        # to the checked address) and no kept-alive connections (each one was verified for one name).
        self._http = httpx.Client(
            timeout=SEND_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
            verify=ssl_context or httpx.create_ssl_context(trust_env=True),
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                sent = self.deliver_due()
            except Exception:
                log.exception("webhook delivery round failed")
                sent = 0
            if not sent:
                stop.wait(self.poll_seconds)
        self._http.close()

    def deliver_due(self, now: float | None = None) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        due = self.webhooks.claim_due(time.time() if now is None else now, LEASE_SECONDS)
        for delivery in due:
            try:
                self._attempt(delivery)
            except Exception:  # not even recorded (the database): its lease runs out and it is tried again
                log.exception("webhook delivery %s: attempt not recorded", delivery.id)
        return len(due)

    def _attempt(self, delivery: WebhookDeliveryRow) -> None:
        attempts = delivery.attempts + 1
        try:
            endpoint = self.webhooks.get_endpoint(delivery.endpoint_id)
        except WebhookEndpointNotFound:
            self._record(delivery, FAILED, attempts, None, "The endpoint was deleted.")
            return
        code, error = self._send(endpoint, delivery)
        if error is None:
            self._record(delivery, DELIVERED, attempts, code, None)
            return
        final = attempts >= self.max_attempts
        self._record(delivery, FAILED if final else PENDING, attempts, code, error[:MAX_ERROR_CHARS])

    def _send(self, endpoint: WebhookEndpointRow, delivery: WebhookDeliveryRow) -> tuple[int | None, str | None]:
        """One signed POST of ``delivery``: the answer's status code, and what went wrong (None: a 2xx)."""
        try:
            destination = self.egress.check(endpoint.url)
            headers = signed_headers(endpoint.secret, delivery.event_id, delivery.payload)
            code = egress.post(self._http, destination, content=delivery.payload.encode(), headers=headers)
        except egress.EgressRefused as exc:
            return None, exc.message
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # whatever else one endpoint causes stays with its delivery
            log.exception("webhook delivery %s to %s failed", delivery.id, endpoint.id)
            return None, f"{type(exc).__name__}: {exc}"
        return code, None if 200 <= code < 300 else f"HTTP {code}"

    def _record(self, d: WebhookDeliveryRow, status: str, attempts: int, code: int | None, error: str | None) -> None:
        next_at = time.time() + backoff_seconds(attempts, self.backoff_base) if status == PENDING else 0.0
        self.webhooks.record_attempt(
            d.id, status=status, attempts=attempts, next_attempt_at=next_at, status_code=code, error=error
        )
        log.info("webhook %s to %s: attempt %d -> %s %s", d.event_type, d.endpoint_id, attempts, status, error or "")


def delivery_view(d: WebhookDeliveryRow) -> dict[str, Any]:
    """A delivery as the API and CLI show it."""
    return {
        "id": d.id,
        "object": "webhook.delivery",
        "event_id": d.event_id,
        "event_type": d.event_type,
        "endpoint_id": d.endpoint_id,
        "status": d.status,
        "attempts": d.attempts,
        "created_at": d.created_at,
        "delivered_at": d.delivered_at,
        "next_attempt_at": int(d.next_attempt_at) if d.status == PENDING else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "payload": json.loads(d.payload),
    }
