"""Webhook URLs that name hosts, resolved for real: a live ``openft serve`` runs in its own mount
namespace where /etc/hosts is a file this test writes, so the server's getaddrinfo (through nsswitch)
answers what the test says, and the test changes the answer while the server runs."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from e2e.e2e_support import start_live_server, stop_live_server

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"
PUBLIC = "8.8.8.8"  # a public address: checked when the endpoint is created, never connected to
HOSTS = "127.0.0.1 localhost\n"
# Mount a file over /etc/hosts in a new mount namespace (private propagation), then become the server.
IN_NAMESPACE = 'mount --bind "$0" /etc/hosts && exec "$@"'


@dataclass
class NamespacedServer:
    client: OpenAI
    hosts: Path
    """Rewritten in place (the mount is of this file's inode): the server's next lookup sees it."""

    def resolve(self, *lines: str) -> None:
        with self.hosts.open("r+") as f:
            f.truncate()
            f.write(HOSTS + "".join(f"{line}\n" for line in lines))


def _unshare() -> list[str]:
    """``unshare -m`` as root; ``unshare -Urm`` (a user namespace first) otherwise."""
    if shutil.which("unshare") is None:
        pytest.fail("these tests need util-linux's unshare to give the server its own /etc/hosts")
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[NamespacedServer]:
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_dir)
    hosts = home / "hosts"
    hosts.write_text(HOSTS)
    launcher = [*_unshare(), "sh", "-c", IN_NAMESPACE, str(hosts)]
    live = start_live_server(home, launcher=launcher, env={"OPENFT_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "false"})
    yield NamespacedServer(client=live.client(), hosts=hosts)
    stop_live_server(live)


def _create(client: OpenAI, url: str) -> dict[str, Any]:
    return client.post("/organization/webhooks", body={"url": url}, cast_to=object)  # type: ignore[no-any-return]


def _refusal(client: OpenAI, url: str) -> str:
    with pytest.raises(openai.BadRequestError) as refused:
        _create(client, url)
    assert refused.value.body["param"] == "url"  # type: ignore[index]
    return refused.value.message


def test_names_resolving_to_private_addresses_are_refused_at_creation(server: NamespacedServer) -> None:
    server.resolve(f"{PUBLIC} hooks.openft.test", "10.0.0.7 inward.openft.test")
    assert "inward.openft.test resolves to 10.0.0.7, a private address" in _refusal(
        server.client, "https://inward.openft.test/hooks"
    )
    made = _create(server.client, "https://hooks.openft.test/hooks")
    assert made["url"] == "https://hooks.openft.test/hooks"

    # Any inward address refuses a name, whichever comes first.
    server.resolve(f"{PUBLIC} both.openft.test", "169.254.169.254 both.openft.test", "::ffff:10.9.9.9 v6.openft.test")
    assert "both.openft.test resolves to 169.254.169.254, a cloud metadata address" in _refusal(
        server.client, "http://both.openft.test/"
    )
    assert "an IPv6 form of 10.9.9.9, a private address" in _refusal(server.client, "http://v6.openft.test/")
    server.client.delete(f"/organization/webhooks/{made['id']}", cast_to=object)


def test_a_name_that_turns_inward_after_creation_is_refused_at_delivery(server: NamespacedServer) -> None:
    client = server.client
    server.resolve(f"{PUBLIC} rebind.openft.test")
    endpoint = _create(client, "http://rebind.openft.test:8080/hooks")
    server.resolve("10.0.0.7 rebind.openft.test")

    train = client.files.create(file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=train.id)
    client.fine_tuning.jobs.cancel(job.id)
    path = f"/organization/webhooks/{endpoint['id']}/deliveries"
    deadline = time.time() + 60
    while not (deliveries := client.get(path, cast_to=object)["data"]) or deliveries[0]["attempts"] == 0:
        assert time.time() < deadline, "the server's worker never attempted the delivery"
        time.sleep(0.2)
    (delivery,) = deliveries
    assert delivery["payload"]["data"] == {"id": job.id} and delivery["status"] == "pending"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] is None
    assert "rebind.openft.test resolves to 10.0.0.7, a private address" in delivery["last_error"]
    assert delivery["next_attempt_at"] > time.time()  # retried on the schedule, refused again then
