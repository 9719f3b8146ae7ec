"""Reinforcement fine-tuning against a live server with the official client, on openft/tiny-chat:
a job with a string_check grader and one with a python grader succeed, report rewards, and their
models and checkpoints chat; the request checks of method ``reinforcement``."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from e2e_support import LiveServer
from openai import OpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"
# Two steps of two prompts, two completions each, at most 32 new tokens: a few seconds of training.
HYPER = {"n_epochs": 1, "batch_size": 5, "compute_multiplier": 0.5, "reasoning_effort": "low", "eval_interval": 1}
STRING_CHECK = {
    "type": "string_check",
    "name": "says_hello",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "ilike",
}
PYTHON = {
    "type": "python",
    "name": "length",
    "source": "def grade(sample, item):\n    return min(1.0, len(sample['output_text']) / 100)\n",
}


@pytest.fixture(scope="module", autouse=True)
def short_grader_timeout() -> Iterator[None]:
    """Read by the module's live server: a hanging python grader is stopped after 3 s, not 30."""
    old = os.environ.get("OPENFT_PYTHON_GRADER_TIMEOUT_SECONDS")
    os.environ["OPENFT_PYTHON_GRADER_TIMEOUT_SECONDS"] = "3"
    yield
    if old is None:
        del os.environ["OPENFT_PYTHON_GRADER_TIMEOUT_SECONDS"]
    else:
        os.environ["OPENFT_PYTHON_GRADER_TIMEOUT_SECONDS"] = old


def _upload(client: OpenAI, name: str) -> str:
    return client.files.create(file=(name, (ASSETS / name).read_bytes()), purpose="fine-tune").id


def _wait(client: OpenAI, job_id: str, timeout: float = 600) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def _run_job(client: OpenAI, grader: dict[str, Any]) -> Any:
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=_upload(client, "rft_train.jsonl"),
        validation_file=_upload(client, "rft_valid.jsonl"),
        method={"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": HYPER}},
        seed=3,
    )
    assert job.method.type == "reinforcement"
    return _wait(client, job.id)


@pytest.mark.parametrize("grader", [STRING_CHECK, PYTHON], ids=["string_check", "python"])
def test_rft_job_succeeds_reports_rewards_and_chats(live_server: LiveServer, grader: dict[str, Any]) -> None:
    client = live_server.client()
    job = _run_job(client, grader)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model
    hyper = job.method.reinforcement.hyperparameters
    assert (hyper.n_epochs, hyper.batch_size, hyper.compute_multiplier) == (1, 5, 0.5)
    assert (hyper.eval_interval, hyper.eval_samples, hyper.reasoning_effort) == (1, 1, "low")

    events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))
    metrics = [e for e in events if e.type == "metrics"]
    assert [m.data["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert 0.0 <= m.data["train_mean_reward"] <= 1.0
        assert m.data["train_grader_error_rate"] == 0.0
        assert "train mean reward=" in m.message
    assert "full_valid_mean_reward" in metrics[-1].data
    assert any("before training" in e.message for e in events)

    (result_file,) = job.result_files
    rows = list(csv.DictReader(io.StringIO(client.files.content(result_file).text)))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert rows[-1]["full_valid_mean_reward"] != ""

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    slow = client.with_options(timeout=600)  # the first chat loads the base model and the adapter
    assert len(checkpoints) == 1
    for model in (job.fine_tuned_model, checkpoints[0].fine_tuned_model_checkpoint):
        reply = slow.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
        )
        assert reply.choices[0].message.content is not None
        assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_rft_needs_a_validation_file_and_a_valid_grader(live_server: LiveServer) -> None:
    client = live_server.client()
    train = _upload(client, "rft_train.jsonl")
    valid = _upload(client, "rft_valid.jsonl")
    method = {"type": "reinforcement", "reinforcement": {"grader": STRING_CHECK}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=TINY, training_file=train, method=method)
    assert caught.value.body["param"] == "validation_file"  # type: ignore[index]
    bad = {"type": "reinforcement", "reinforcement": {"grader": {**STRING_CHECK, "operation": "regex"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=TINY, training_file=train, validation_file=valid, method=bad)
    assert caught.value.body["param"] == "method.reinforcement.grader"  # type: ignore[index]
    effort = {
        "type": "reinforcement",
        "reinforcement": {"grader": STRING_CHECK, "hyperparameters": {"reasoning_effort": "extreme"}},
    }
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model=TINY, training_file=train, validation_file=valid, method=effort)


def test_a_hanging_python_grader_does_not_stall_the_job(live_server: LiveServer) -> None:
    # Every sample's grader is killed at its time limit; the job still finishes, with the errors counted.
    hanging = {"type": "python", "name": "hangs", "source": "def grade(sample, item):\n    while True:\n        pass\n"}
    client = live_server.client()
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=_upload(client, "rft_train.jsonl"),
        validation_file=_upload(client, "rft_valid.jsonl"),
        method={
            "type": "reinforcement",
            "reinforcement": {"grader": hanging, "hyperparameters": {**HYPER, "batch_size": 10}},
        },
    )
    job = _wait(client, job.id)
    assert job.status == "succeeded", job.error
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert metrics and all(m.data["train_grader_error_rate"] == 1.0 for m in metrics)
    assert all(m.data["train_mean_reward"] == 0.0 for m in metrics)
