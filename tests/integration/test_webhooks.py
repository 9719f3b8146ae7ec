"""Webhook endpoints through the API, and deliveries from the outbox to a real HTTP server on
loopback: signed (checked with the official client's verifier and the Standard Webhooks library),
retried with backoff after a failure, every attempt visible."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import standardwebhooks
from openai import OpenAI

from openft.jobs.webhooks import WebhookDispatcher, sign
from openft.settings import Settings
from openft.store import open_store
from webhook_receiver import Receiver

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The receiver listens on 127.0.0.1, which only this setting lets an endpoint name."""
    return settings.model_copy(update={"webhook_allow_private_addresses": True})


def _dispatcher(settings: Settings, **kwargs: Any) -> WebhookDispatcher:
    store = open_store(settings.sqlalchemy_url)
    return WebhookDispatcher(store, allow_private_addresses=settings.webhook_allow_private_addresses, **kwargs)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _cancelled_job(client: OpenAI) -> str:
    train = client.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=train.id)
    client.fine_tuning.jobs.cancel(job.id)
    return job.id


def test_endpoints_are_created_listed_and_deleted(client: OpenAI) -> None:
    made = client.post("/organization/webhooks", body={"url": "http://127.0.0.1:9/x"}, cast_to=object)
    assert made["id"].startswith("we_") and made["secret"].startswith("whsec_")
    assert made["events"] == ["fine_tuning.job.cancelled", "fine_tuning.job.failed", "fine_tuning.job.succeeded"]
    listed = client.get("/organization/webhooks", cast_to=object)["data"]
    assert [e["id"] for e in listed] == [made["id"]] and "secret" not in listed[0]
    client.delete(f"/organization/webhooks/{made['id']}", cast_to=object)
    assert client.get("/organization/webhooks", cast_to=object)["data"] == []
    with pytest.raises(openai.NotFoundError):
        client.get(f"/organization/webhooks/{made['id']}/deliveries", cast_to=object)


@pytest.mark.parametrize(
    ("body", "param"), [({"url": "ftp://example.com/x"}, "url"), ({"url": "http://a.b/c", "events": ["x"]}, "events")]
)
def test_bad_endpoints_are_400s(client: OpenAI, body: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/organization/webhooks", body=body, cast_to=object)
    assert info.value.body["param"] == param  # type: ignore[index]


def test_cancelled_job_is_delivered_signed(client: OpenAI, settings: Settings, receiver: Receiver) -> None:
    endpoint = client.post("/organization/webhooks", body={"url": receiver.url}, cast_to=object)
    job_id = _cancelled_job(client)
    sent = _dispatcher(settings).deliver_due()
    assert sent == 1 and len(receiver.received) == 1
    headers, body = receiver.received[0]

    # The official client's verifier: signature, timestamp tolerance, and the typed event.
    event = OpenAI(api_key="x", webhook_secret=endpoint["secret"]).webhooks.unwrap(body, headers)
    assert event.type == "fine_tuning.job.cancelled" and event.data.id == job_id
    assert event.object == "event" and event.id == headers["webhook-id"] and event.id.startswith("evt_")
    # And the Standard Webhooks reference library.
    assert standardwebhooks.Webhook(endpoint["secret"]).verify(body, headers)["data"] == {"id": job_id}
    with pytest.raises(openai.InvalidWebhookSignatureError):
        OpenAI(api_key="x").webhooks.verify_signature(body, headers, secret="whsec_" + "A" * 44)

    deliveries = client.get(f"/organization/webhooks/{endpoint['id']}/deliveries", cast_to=object)["data"]
    assert len(deliveries) == 1
    assert deliveries[0]["status"] == "delivered" and deliveries[0]["attempts"] == 1
    assert deliveries[0]["last_status_code"] == 200 and deliveries[0]["payload"] == json.loads(body)


def test_failed_attempts_are_retried_with_backoff(client: OpenAI, settings: Settings, receiver: Receiver) -> None:
    endpoint = client.post("/organization/webhooks", body={"url": receiver.url}, cast_to=object)
    _cancelled_job(client)
    receiver.statuses = [500, 503]
    dispatcher = _dispatcher(settings, backoff_base=30.0)
    path = f"/organization/webhooks/{endpoint['id']}/deliveries"

    started = time.time()
    assert dispatcher.deliver_due() == 1
    first = client.get(path, cast_to=object)["data"][0]
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("pending", 1, 500)
    assert int(started) + 30 <= first["next_attempt_at"] <= time.time() + 31
    assert dispatcher.deliver_due() == 0  # not due yet

    retried = time.time()
    assert dispatcher.deliver_due(now=first["next_attempt_at"] + 1) == 1
    second = client.get(path, cast_to=object)["data"][0]
    assert (second["status"], second["attempts"], second["last_status_code"]) == ("pending", 2, 503)
    assert int(retried) + 60 <= second["next_attempt_at"] <= time.time() + 61  # the delay doubled

    assert dispatcher.deliver_due(now=second["next_attempt_at"] + 1) == 1
    third = client.get(path, cast_to=object)["data"][0]
    assert (third["status"], third["attempts"], third["last_error"]) == ("delivered", 3, None)
    # Each attempt is signed anew with its own timestamp, under the same webhook-id.
    assert len({h["webhook-id"] for h, _ in receiver.received}) == 1 and len(receiver.received) == 3


def test_signature_matches_the_standard_webhooks_example() -> None:
    # The worked example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
