"""Keys and organizations on a live server with real training: keys made with the CLI, two organizations
through the official client, a checkpoint shared with another organization's project answers its chat
requests until the permission is deleted; and ``openft serve`` refuses a network address without keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from e2e_support import LiveServer, _free_port
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"


def _openft(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENFT_HOME": str(home)}
    env.pop("OPENFT_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "openft", *args], env=env, capture_output=True, text=True, timeout=120)


def _new_key(home: Path, organization: str, project: str) -> str:
    made = _openft(home, "keys", "create", "--organization", organization, "--project", project, "--name", "e2e")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-") and "\n" not in key  # the key, and only the key, on stdout
    return key


def _client(server: LiveServer, key: str) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)


def _wait(client: OpenAI, job_id: str, timeout: float = 900) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def _chat(client: OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4, seed=1
    )
    return answer.choices[0].message.content or ""


def test_two_organizations_and_a_shared_checkpoint(live_server: LiveServer) -> None:
    acme = _client(live_server, _new_key(live_server.home, "org-acme", "proj_acme"))
    globex = _client(live_server, _new_key(live_server.home, "org-globex", "proj_globex"))
    with pytest.raises(openai.AuthenticationError):
        _client(live_server, "sk-local").files.list()

    data = (ASSETS / "tiny_train.jsonl").read_bytes()
    training_file = acme.files.create(file=("train.jsonl", data), purpose="fine-tune")
    created = acme.fine_tuning.jobs.create(
        model="openft/tiny-chat", training_file=training_file.id, hyperparameters={"n_epochs": 2}
    )
    job = _wait(acme, created.id)
    assert job.status == "succeeded", job.error
    assert job.organization_id == "org-acme" and job.fine_tuned_model.startswith("ft:openft/tiny-chat:acme:")
    checkpoints = list(acme.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints
    ckpt = checkpoints[0].fine_tuned_model_checkpoint

    assert list(globex.files.list()) == [] and list(globex.fine_tuning.jobs.list()) == []
    assert not any(m.id.startswith("ft:") for m in globex.models.list())
    for call in (
        lambda: globex.files.content(training_file.id),
        lambda: globex.fine_tuning.jobs.list_events(job.id),
        lambda: globex.fine_tuning.jobs.checkpoints.list(job.id),
        lambda: globex.models.retrieve(job.fine_tuned_model),
        lambda: _chat(globex, ckpt),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert isinstance(_chat(acme, ckpt), str)

    with_own_project = acme.fine_tuning.checkpoints.permissions.create(ckpt, project_ids=["proj_globex"])
    with pytest.raises(openai.NotFoundError):  # a bare id is a project of acme's own organization
        _chat(globex, ckpt)
    acme.fine_tuning.checkpoints.permissions.delete(with_own_project.data[0].id, fine_tuned_model_checkpoint=ckpt)
    grant = acme.fine_tuning.checkpoints.permissions.create(ckpt, project_ids=["org-globex/proj_globex"]).data[0]
    assert isinstance(_chat(globex, ckpt), str)  # usable there now
    assert ckpt in {m.id for m in globex.models.list()}
    with pytest.raises(openai.NotFoundError):  # only that checkpoint was shared
        _chat(globex, job.fine_tuned_model)
    acme.fine_tuning.checkpoints.permissions.delete(grant.id, fine_tuned_model_checkpoint=ckpt)
    with pytest.raises(openai.NotFoundError):
        _chat(globex, ckpt)


def test_keys_cli_lists_and_revokes(live_server: LiveServer) -> None:
    key = _new_key(live_server.home, "org-initech", "proj_tps")
    client = _client(live_server, key)
    assert list(client.files.list()) == []
    listed = _openft(live_server.home, "keys", "list", "--organization", "org-initech")
    assert listed.returncode == 0 and f"sk-...{key[-4:]}" in listed.stdout and key not in listed.stdout
    key_id = next(word for word in listed.stdout.split() if word.startswith("key_"))
    revoked = _openft(live_server.home, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(openai.AuthenticationError):
        client.files.list()
    assert _openft(live_server.home, "keys", "revoke", key_id).returncode == 1  # already revoked


def test_serve_needs_keys_or_insecure_on_a_network_address(tmp_path: Path, models_dir: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    port = _free_port()
    refused = _openft(home, "serve", "--host", "0.0.0.0", "--port", str(port), "--no-worker")
    assert refused.returncode == 2 and "Refusing to listen on 0.0.0.0 without API keys" in refused.stderr
    key = _new_key(home, "org-acme", "proj_acme")
    env = {**os.environ, "OPENFT_HOME": str(home)}
    env.pop("OPENFT_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "openft", "serve", "--host", "0.0.0.0", "--port", str(port), "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.time() < deadline, "serve did not start with a key configured"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/files").status_code == 401
        headers = {"authorization": f"Bearer {key}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/files", headers=headers).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
