"""The user's side against a live server: ``openft jobs follow`` on a running tiny job until it ends
(exit 0 on success, 1 on failure), the W&B offline run and the MLflow run holding the job's
metrics, and the signed webhooks of both jobs received by a test HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LiveServer, start_live_server, stop_live_server
from openai import OpenAI
from wandb_reader import read_run

from webhook_receiver import Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"


def _openft(
    live_server: LiveServer, *args: str, stdin: str | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENFT_API_KEY": "sk-local", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "openft", *args, "--base-url", live_server.base_url],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    """A live server whose webhooks may go to the receiver on 127.0.0.1 (a private address)."""
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_dir)
    server = start_live_server(home, env={"OPENFT_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"})
    yield server
    stop_live_server(server)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def webhook_secret(live_server: LiveServer, receiver: Receiver) -> str:
    added = _openft(live_server, "webhooks", "add", receiver.url)
    assert added.returncode == 0, added.stderr
    endpoint_id, secret = added.stdout.split()
    assert endpoint_id.startswith("we_") and secret.startswith("whsec_")
    return secret


@pytest.fixture(scope="module")
def followed_job(
    live_server: LiveServer, webhook_secret: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A tiny job with both integrations, created and followed through the CLI."""
    client = live_server.client()
    mlruns = tmp_path_factory.mktemp("mlruns")
    created = _openft(
        live_server,
        "jobs", "create", TINY, _upload(client, "tiny_train.jsonl"),
        "--validation-file", _upload(client, "tiny_valid.jsonl"),
        "--seed", "5", "--n-epochs", "2",
        "--wandb-project", "openft-e2e", "--wandb-tag", "nightly",
        "--mlflow-tracking-uri", mlruns.as_uri(), "--mlflow-experiment", "openft-e2e",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.strip()
    followed = _openft(live_server, "jobs", "follow", job_id, "--poll", "0.5")
    return {"id": job_id, "follow": followed, "mlruns": mlruns}


def _metrics(client: OpenAI, job_id: str) -> list[dict[str, Any]]:
    events = reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=1000)))
    return [e.data for e in events if e.type == "metrics"]


def test_follow_exits_0_when_the_job_succeeds(live_server: LiveServer, followed_job: dict[str, Any]) -> None:
    job = live_server.client().fine_tuning.jobs.retrieve(followed_job["id"])
    follow = followed_job["follow"]
    assert job.status == "succeeded", job.error
    assert follow.returncode == 0, follow.stdout + follow.stderr
    lines = follow.stdout.strip().splitlines()
    assert lines[-1] == f"{job.id}: succeeded {job.fine_tuned_model}"
    # The job's messages were shown as they arrived, in order.
    text = follow.stdout
    assert text.index("Fine-tuning job started") < text.index("Step 1/24") < text.index("Step 24/24")


@pytest.fixture(scope="module")
def failed_job(live_server: LiveServer, webhook_secret: str) -> dict[str, Any]:
    """A job whose training file has a bad line, followed through the CLI."""
    client = live_server.client()
    job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "broken_line7.jsonl"))
    return {"id": job.id, "follow": _openft(live_server, "jobs", "follow", job.id, "--poll", "0.5")}


def test_follow_exits_1_when_the_job_fails(failed_job: dict[str, Any]) -> None:
    follow = failed_job["follow"]
    assert follow.returncode == 1
    last = follow.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{failed_job['id']}: failed The job failed due to a file format error in the training")
    assert "Line 7:" in last


def test_wandb_offline_run_holds_every_metric(live_server: LiveServer, followed_job: dict[str, Any]) -> None:
    job_id = followed_job["id"]
    runs = list((live_server.home / "jobs" / job_id / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "one offline run, to sync later with `wandb sync`"
    run, history = read_run(runs[0])
    assert run["project"] == "openft-e2e" and run["name"] == job_id
    assert set(run["tags"]) == {"nightly", job_id, TINY}

    metrics = _metrics(live_server.client(), job_id)
    assert [row["_step"] for row in history] == [m["step"] for m in metrics] == list(range(1, 25))
    for row, m in zip(history, metrics, strict=True):
        for key, value in m.items():
            assert row[key] == pytest.approx(value, rel=1e-9), key
    assert sum("full_valid_loss" in row for row in history) == 2  # one per epoch


def test_mlflow_run_holds_the_metrics(
    live_server: LiveServer, followed_job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=followed_job["mlruns"].as_uri())
    experiment = client.get_experiment_by_name("openft-e2e")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == followed_job["id"] and run.info.status == "FINISHED"
    assert run.data.tags["openft.job_id"] == followed_job["id"]
    history = client.get_metric_history(run.info.run_id, "train_loss")
    metrics = _metrics(live_server.client(), followed_job["id"])
    assert [(h.step, h.value) for h in history] == [(m["step"], pytest.approx(m["train_loss"])) for m in metrics]


def test_webhooks_arrive_signed_for_both_outcomes(
    live_server: LiveServer,
    followed_job: dict[str, Any],
    failed_job: dict[str, Any],
    receiver: Receiver,
    webhook_secret: str,
) -> None:
    received = receiver.wait_for(2)
    verifier = OpenAI(api_key="x", webhook_secret=webhook_secret)
    events = {}
    for headers, body in received:
        event = verifier.webhooks.unwrap(body, headers)
        events[event.data.id] = event.type
        assert json.loads(body)["id"] == headers["webhook-id"]
    assert events == {followed_job["id"]: "fine_tuning.job.succeeded", failed_job["id"]: "fine_tuning.job.failed"}
    listed = _openft(live_server, "webhooks", "list", "--json")
    (endpoint,) = json.loads(listed.stdout)
    deliveries = json.loads(_openft(live_server, "webhooks", "deliveries", endpoint["id"], "--json").stdout)
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in deliveries] == [("delivered", 1, 200)] * 2


def test_chat_holds_a_conversation_read_from_stdin(live_server: LiveServer, followed_job: dict[str, Any]) -> None:
    client = live_server.client()
    model = client.fine_tuning.jobs.retrieve(followed_job["id"]).fine_tuned_model
    questions = ["What is the capital of France?", "And of Spain?"]
    chat = _openft(live_server, "chat", model, "--max-tokens", "6", stdin="\n".join(questions) + "\n")
    assert chat.returncode == 0, chat.stderr

    messages: list[dict[str, str]] = []
    expected = ""
    for question in questions:  # the same conversation through the API, history included
        messages.append({"role": "user", "content": question})
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=6, temperature=0)
        answer = reply.choices[0].message.content or ""
        messages.append({"role": "assistant", "content": answer})
        expected += answer + "\n"
    assert chat.stdout == expected
