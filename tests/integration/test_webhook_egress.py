"""Webhook endpoints cannot be turned against the server's network, and one bad endpoint cannot stall
the others: URLs naming loopback, private, link-local or metadata addresses are refused when created
(through the official client) and at delivery; deliveries go to the address that was checked, with
the name kept for Host and TLS; whatever fails in one delivery is recorded on it while the rest go out."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.jobs import egress, webhooks
from openft.settings import Settings
from openft.store import open_store
from openft.store.webhooks import SqlWebhooks
from webhook_receiver import Receiver

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"
TLS_NAME = "hooks.openft.invalid"  # .invalid never resolves: a request that reaches it was not looked up


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, and a server certificate it signed for ``TLS_NAME`` only (made with the openssl CLI)."""
    d = tmp_path_factory.mktemp("tls")
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    (d / "leaf.ext").write_text(
        f"subjectAltName=DNS:{TLS_NAME}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
    )
    for command in (
        f"req -x509 {ec} -subj /CN=openft-test-CA -keyout ca.key -out ca.pem "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
        f"req {ec} -subj /CN={TLS_NAME} -keyout leaf.key -out leaf.csr",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile leaf.ext -out leaf.pem",
    ):
        subprocess.run(["openssl", *command.split()], cwd=d, check=True, capture_output=True)
    return d


def _tls_receiver(certificates: Path) -> Receiver:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates / "leaf.pem", certificates / "leaf.key")
    return Receiver(tls=context)


def _create(client: OpenAI, url: str) -> dict[str, Any]:
    return client.post("/organization/webhooks", body={"url": url}, cast_to=object)  # type: ignore[no-any-return]


def _cancelled_job(client: OpenAI) -> str:
    train = client.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=train.id)
    client.fine_tuning.jobs.cancel(job.id)
    return job.id


REFUSED = [
    ("http://127.0.0.1:9/x", "127.0.0.1, a loopback address"),
    ("http://localhost:8000/hooks", "localhost resolves to 127.0.0.1, a loopback address"),
    ("http://[::1]/x", "::1, a loopback address"),
    ("http://10.0.0.5/x", "10.0.0.5, a private address"),
    ("http://192.168.1.20/x", "192.168.1.20, a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a cloud metadata address"),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254, a cloud metadata address"),
    ("http://100.100.100.200/", "a cloud metadata address"),
    ("http://100.64.3.4/", "a shared (carrier-grade NAT) address"),
    ("http://[::ffff:10.1.2.3]/", "an IPv6 form of 10.1.2.3, a private address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),  # 127.0.0.1 in decimal
    ("http://a:b:c/", "url is not a valid URL"),
    ("https://user:secret@example.com/", "must not contain credentials"),
    ("http://nowhere.openft.invalid/x", "could not be resolved"),
]
"""URLs refused when an endpoint is created, and the words of the reason."""


def test_private_metadata_and_malformed_urls_are_refused_at_creation(client: OpenAI) -> None:
    for url, reason in REFUSED:
        with pytest.raises(openai.BadRequestError) as refused:
            _create(client, url)
        error = refused.value.body
        assert refused.value.status_code == 400 and isinstance(error, dict), url
        assert (error["param"], error["code"], error["type"]) == ("url", "invalid_url", "invalid_request_error")
        assert reason in error["message"], (url, error["message"])
    assert client.get("/organization/webhooks", cast_to=object)["data"] == []
    made = _create(client, "https://8.8.8.8:9/hooks")  # a public address: checked, never connected to
    assert made["url"] == "https://8.8.8.8:9/hooks"


def test_the_setting_allows_private_addresses_but_never_metadata(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    allowing = settings.model_copy(update={"webhook_allow_private_addresses": True})
    with TestClient(create_app(allowing, embedded_worker=False)) as http:
        client = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
        assert _create(client, "http://127.0.0.1:9/x")["id"].startswith("we_")
        assert _create(client, "http://10.0.0.5/x")["id"].startswith("we_")
        for url in ("http://169.254.169.254/", "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"):
            with pytest.raises(openai.BadRequestError) as refused:
                _create(client, url)
            assert "a cloud metadata address" in refused.value.message and "OPENFT_" not in refused.value.message
    with caplog.at_level(logging.WARNING, logger="openft.jobs.webhooks"):
        webhooks.WebhookDispatcher(open_store(allowing.sqlalchemy_url), allow_private_addresses=True)
    assert any("OPENFT_WEBHOOK_ALLOW_PRIVATE_ADDRESSES is on" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_request_goes_to_the_checked_address_under_its_name(
    scheme: str, certificates: Path, receiver: Receiver
) -> None:
    # The name cannot be resolved, so a request that arrives was sent to the address in the Destination;
    # over https the certificate (issued for the name only) was verified against the name.
    target = _tls_receiver(certificates) if scheme == "https" else receiver
    try:
        url = f"{scheme}://{TLS_NAME}:{target.port}/hooks?x=1"
        destination = egress.Destination(url=egress.parse_url(url), addresses=(ipaddress.ip_address("127.0.0.1"),))
        verify = ssl.create_default_context(cafile=certificates / "ca.pem")
        with httpx.Client(verify=verify, trust_env=False) as http:
            code = egress.post(http, destination, content=b"{}", headers={"content-type": "application/json"})
        assert code == 200 and len(target.received) == 1
        assert target.received[0][0]["host"] == f"{TLS_NAME}:{target.port}"
        if scheme == "https":
            assert target.server_names == [TLS_NAME]
            with httpx.Client(trust_env=False) as http, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
                egress.post(http, destination, content=b"{}", headers={})  # the public CAs do not know this one
    finally:
        if target is not receiver:
            target.close()


def test_a_broken_endpoint_does_not_hold_up_the_others(
    app: FastAPI, client: OpenAI, settings: Settings, receiver: Receiver, certificates: Path
) -> None:
    # Rows as endpoints created before URLs were checked would be, each broken in its own way, and all
    # older than the good endpoint, so their deliveries come first in the round.
    store = SqlWebhooks(app.state.store.engine)
    organization = settings.organization_id
    broken = {
        "http://a:b:c/": "Invalid port",
        "http://nowhere.openft.invalid/hooks": "could not be resolved",
        "http://169.254.169.254/latest/meta-data/": "a cloud metadata address",
        f"https://127.0.0.1:{receiver.port}/hooks": "SSL",  # TLS to a server that speaks plain http
    }
    for url in broken:
        store.add_endpoint(webhooks.new_endpoint(organization, url))
    bad_secret = webhooks.new_endpoint(organization, receiver.url)
    bad_secret.secret = "whsec_A"  # not base64: signing raises
    store.add_endpoint(bad_secret)
    allowing = settings.model_copy(update={"webhook_allow_private_addresses": True})
    with TestClient(create_app(allowing, embedded_worker=False)) as http:
        allowed = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
        endpoint = _create(allowed, receiver.url)
    _cancelled_job(client)

    dispatcher = webhooks.WebhookDispatcher(
        open_store(settings.sqlalchemy_url), allow_private_addresses=True, backoff_base=30.0, max_attempts=2
    )
    started = time.monotonic()
    assert dispatcher.deliver_due() == 6
    assert time.monotonic() - started < 10 and len(receiver.received) == 1
    assert store.list_deliveries(endpoint["id"])[0].status == "delivered"

    def bad_deliveries() -> dict[str, Any]:
        rows = {
            e.url: store.list_deliveries(e.id)[0] for e in store.list_endpoints(organization) if e.id != endpoint["id"]
        }
        return {("bad secret" if url == receiver.url else url): row for url, row in rows.items()}

    first = bad_deliveries()
    assert len(first) == 5
    for url, row in first.items():
        assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None), url
        assert broken.get(url, "Error") in (row.last_error or ""), (url, row.last_error)
        assert time.time() + 25 < row.next_attempt_at < time.time() + 31  # the schedule, not a tight loop
    assert "Invalid base64" in (first["bad secret"].last_error or "")

    assert dispatcher.deliver_due(now=time.time() + 31) == 5  # the last attempt: each one fails for good
    for url, row in bad_deliveries().items():
        assert (row.status, row.attempts) == ("failed", 2), url
    assert len(receiver.received) == 1
