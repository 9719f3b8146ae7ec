"""The core loop against a live server with the official client: upload, fine-tune openft/tiny-chat,
follow the job, check every field, chat with the model and a checkpoint; reproducibility; failure
and cancellation."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LiveServer
from openai import OpenAI

from training_processes import training_pids

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"
TERMINAL = ("succeeded", "failed", "cancelled")


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id


def _wait(client: OpenAI, job_id: str, timeout: float = 240) -> tuple[Any, list[Any]]:
    """Poll to the end; also return the job objects seen while it ran."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        seen.append(job)
        if job.status in TERMINAL:
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s (last status {job.status})")


def _events(client: OpenAI, job_id: str) -> list[Any]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def _train_losses(client: OpenAI, job_id: str) -> list[float]:
    return [e.data["train_loss"] for e in _events(client, job_id) if e.type == "metrics"]


@pytest.fixture(scope="module")
def finished_job(live_server: LiveServer) -> tuple[Any, list[Any]]:
    client = live_server.client()
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=_upload(client, "tiny_train.jsonl"),
        validation_file=_upload(client, "tiny_valid.jsonl"),
        suffix="support",
        seed=7,
        metadata={"purpose": "e2e"},
    )
    return _wait(client, job.id)


def test_job_succeeds_with_every_field_true(live_server: LiveServer, finished_job: tuple[Any, list[Any]]) -> None:
    client = live_server.client()
    job, seen = finished_job
    assert job.status == "succeeded", job.error
    assert re.fullmatch(r"ft:openft/tiny-chat:personal:support:[A-Za-z0-9]{8}", job.fine_tuned_model)
    assert job.error is None and job.seed == 7 and job.metadata == {"purpose": "e2e"}
    assert job.created_at <= job.finished_at <= time.time() + 1
    assert job.estimated_finish is None
    hp = job.hyperparameters
    n_train = len((ASSETS / "tiny_train.jsonl").read_text().splitlines())
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (100 // n_train, 1, 1.0)
    assert {s.status for s in seen} >= {"running", "succeeded"}
    running = [s for s in seen if s.status == "running"]
    forecasts = [s.estimated_finish for s in running if s.estimated_finish is not None]
    assert forecasts and all(f >= s.created_at for f, s in zip(forecasts, running, strict=False))

    # trained_tokens: every token of every example, once per epoch (the tokenizer is the model's own).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(live_server.home / "models" / "openft--tiny-chat")
    import json

    per_epoch = sum(
        len(tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=True, return_dict=True)["input_ids"])
        for line in (ASSETS / "tiny_train.jsonl").read_text().splitlines()
    )
    assert job.trained_tokens == per_epoch * hp.n_epochs

    # The results file is a real CSV with one row per step.
    (result_id,) = job.result_files
    meta = client.files.retrieve(result_id)
    assert meta.purpose == "fine-tune-results"
    rows = list(csv.reader(io.StringIO(client.files.content(result_id).text)))
    assert rows[0] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    total_steps = hp.n_epochs * n_train
    assert [int(r[0]) for r in rows[1:]] == list(range(1, total_steps + 1))
    losses = [float(r[1]) for r in rows[1:]]
    assert sum(losses[-n_train:]) / n_train < 0.5 * sum(losses[:n_train]) / n_train  # it learned
    assert any(r[3] for r in rows[1:]) and all(0 <= float(r[2]) <= 1 for r in rows[1:])


def test_events_follow_openai_sequence(live_server: LiveServer, finished_job: tuple[Any, list[Any]]) -> None:
    client = live_server.client()
    job, _ = finished_job
    events = _events(client, job.id)
    messages = [e.message for e in events if e.type == "message" and e.level == "info"]
    expected = [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {job.training_file} and validation file: {job.validation_file}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert [m for m in messages if not m.startswith(("Checkpoint", "Loaded", "New", "The job"))][:4] == expected
    assert messages[-2:] == [
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ]
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == job.hyperparameters.n_epochs * 12
    first = metrics[0]
    assert re.fullmatch(r"Step 1/\d+: training loss=\d+\.\d\d.*", first.message)
    assert {"step", "total_steps", "train_loss", "train_mean_token_accuracy"} <= set(first.data)
    assert any("valid_loss" in e.data for e in metrics) and any("full_valid_loss" in e.data for e in metrics)
    assert [e.data["step"] for e in metrics] == list(range(1, len(metrics) + 1))


def test_checkpoints_are_listed_and_servable(live_server: LiveServer, finished_job: tuple[Any, list[Any]]) -> None:
    client = live_server.client()
    job, _ = finished_job
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    steps_per_epoch = 12
    last_epochs = list(range(job.hyperparameters.n_epochs, 0, -1))[:3]
    assert [c.step_number for c in checkpoints] == [e * steps_per_epoch for e in last_epochs]
    for c in checkpoints:
        assert c.id.startswith("ftckpt-") and c.fine_tuning_job_id == job.id
        assert c.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{c.step_number}"
        assert c.metrics.step == c.step_number and c.metrics.train_loss is not None
    model_ids = {m.id for m in client.models.list()}
    assert {TINY, job.fine_tuned_model} | {c.fine_tuned_model_checkpoint for c in checkpoints} <= model_ids
    assert client.models.retrieve(job.fine_tuned_model).id == job.fine_tuned_model

    question = [{"role": "user", "content": "Hello!"}]
    for model in (job.fine_tuned_model, checkpoints[-1].fine_tuned_model_checkpoint):
        reply = client.chat.completions.create(model=model, messages=question, max_tokens=40, temperature=0)
        assert reply.object == "chat.completion" and reply.model == model
        assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    fine_tuned = client.chat.completions.create(
        model=job.fine_tuned_model, messages=question, max_tokens=40, temperature=0
    )
    # Eight epochs over twelve examples teach the tiny model the answer's words (greedy decoding).
    assert (fine_tuned.choices[0].message.content or "").startswith("Paris is the capital")
    base = client.chat.completions.create(model=TINY, messages=question, max_tokens=40, temperature=0)
    assert base.choices[0].message.content != fine_tuned.choices[0].message.content


def test_same_seed_same_losses(live_server: LiveServer, finished_job: tuple[Any, list[Any]]) -> None:
    """The same job again, every hyperparameter now an explicit "auto": the concrete values are written
    back (top level and method), they are those of the job that left them out, and so are the losses."""
    client = live_server.client()
    first, _ = finished_job
    auto = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
    again = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=first.training_file,
        validation_file=first.validation_file,
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": auto}},
    )
    again, _ = _wait(client, again.id)
    assert again.status == "succeeded"
    assert again.method is not None and again.method.supervised is not None
    for hp in (again.hyperparameters, again.method.supervised.hyperparameters):
        concrete = (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier)
        assert concrete == (first.hyperparameters.n_epochs, first.hyperparameters.batch_size, 1.0)
        assert all(isinstance(value, int | float) for value in concrete)
    assert _train_losses(client, again.id) == _train_losses(client, first.id)


def test_broken_line_fails_naming_the_line(live_server: LiveServer) -> None:
    client = live_server.client()
    job = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "broken_line7.jsonl"))
    job, _ = _wait(client, job.id, timeout=30)
    assert job.status == "failed" and job.error is not None
    assert "Line 7" in job.error.message and "robot" in job.error.message
    assert job.error.param == "training_file"


def test_cancel_stops_training_within_seconds(live_server: LiveServer) -> None:
    client = live_server.client()
    big = client.files.create(
        file=("long.jsonl", (Path(__file__).parents[2] / "src/openft/examples/pirate.jsonl").read_bytes()),
        purpose="fine-tune",
    )
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=big.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 25}}},
    )
    deadline = time.time() + 60
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=5)):
        assert time.time() < deadline, "training never started"
        time.sleep(0.1)
    assert training_pids(job.id), "no training process found"
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    started = time.time()
    while training_pids(job.id):
        assert time.time() - started < 5, "training process still alive 5 s after cancel"
        time.sleep(0.05)
    time.sleep(0.5)
    final = client.fine_tuning.jobs.retrieve(job.id)
    assert final.status == "cancelled" and final.fine_tuned_model is None
    events = _events(client, job.id)
    assert events[0].message == f"Created fine-tuning job: {job.id}" and any(e.type == "metrics" for e in events)
    assert "Fine-tuning job cancelled" in [e.message for e in events]


def _cli(live_server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "openft", *args, "--base-url", live_server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_follow_exits_with_the_job_outcome(live_server: LiveServer, finished_job: tuple[Any, list[Any]]) -> None:
    job, _ = finished_job
    done = _cli(live_server, "jobs", "follow", job.id)
    assert done.returncode == 0, done.stderr
    assert f"{job.id}: succeeded {job.fine_tuned_model}" in done.stdout
    client = live_server.client()
    failed = client.fine_tuning.jobs.create(model=TINY, training_file=_upload(client, "broken_line7.jsonl"))
    result = _cli(live_server, "jobs", "follow", failed.id)
    assert result.returncode == 1 and f"{failed.id}: failed" in result.stdout
    listed = _cli(live_server, "jobs", "list")
    assert job.id in listed.stdout and failed.id in listed.stdout


def test_serve_refuses_a_public_address_without_keys() -> None:
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "openft", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--insecure" in result.stderr
