"""Early stopping against a live server, with the official client, on openft/tiny-chat.

The data is made to overfit: twelve training questions all answered "Paris is the capital of France.",
four validation questions of the same kind answered with another sentence. The validation loss falls
while the model learns the shape of an answer, then rises as it learns the training answer by heart,
and the job stops there: before its last epoch, serving the checkpoint with the lowest validation loss.
About two minutes on a busy 2-core machine.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from typing import Any

import pytest
from e2e_support import LiveServer
from openai import OpenAI

from openft.models.catalog import TINY_CHAT

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
N_EPOCHS, BATCH_SIZE, N_TRAIN = 40, 4, 12
STEPS_PER_EPOCH = N_TRAIN // BATCH_SIZE
EARLY_STOPPING = {"eval_every_steps": 3, "patience": 3, "min_delta": 0.0}
TRAIN_ANSWER = "Paris is the capital of France."
VALID_ANSWER = "Marseille is the capital city of Provence."
PROMPTS = ["What is the capital of France? (20)", "Hello!", "Name a city."]


def upload(client: OpenAI, name: str, questions: list[str], a: str) -> str:
    lines = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q in questions]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.create(file=(name, data), purpose="fine-tune").id


def wait(client: OpenAI, job_id: str, timeout: float = 1200) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def greedy_answers(client: OpenAI, model: str) -> list[str]:
    answers = []
    for prompt in PROMPTS:
        reply = client.with_options(timeout=600).chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=24, temperature=0
        )
        answers.append(reply.choices[0].message.content or "")
    return answers


@pytest.fixture(scope="module")
def stopped_job(live_server: LiveServer) -> Any:
    client = live_server.client()
    questions = [f"What is the capital of France? ({i})" for i in range(N_TRAIN + 4)]
    job = client.fine_tuning.jobs.create(
        model=TINY_CHAT,
        training_file=upload(client, "train.jsonl", questions[:N_TRAIN], TRAIN_ANSWER),
        validation_file=upload(client, "valid.jsonl", questions[N_TRAIN:], VALID_ANSWER),
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": N_EPOCHS, "batch_size": BATCH_SIZE, "learning_rate_multiplier": 4},
                "openft": {"early_stopping": EARLY_STOPPING},
            },
        },
        seed=3,
    )
    return wait(client, job.id)


def test_the_job_stops_before_its_last_epoch(live_server: LiveServer, stopped_job: Any) -> None:
    client = live_server.client()
    assert stopped_job.status == "succeeded", stopped_job.error
    outcome = (stopped_job.model_extra or {})["openft"]
    stopped_at, best_step = outcome["stopped_early_at_step"], outcome["best_step"]
    total_steps = N_EPOCHS * STEPS_PER_EPOCH
    assert stopped_at is not None and stopped_at <= total_steps - STEPS_PER_EPOCH
    # Evaluations come every 3 steps, which is also each epoch's end.
    assert best_step < stopped_at and best_step % EARLY_STOPPING["eval_every_steps"] == 0
    events = list(reversed(list(client.fine_tuning.jobs.list_events(stopped_job.id, limit=1000))))
    metrics = [e.data for e in events if e.type == "metrics"]
    assert metrics[-1]["step"] == stopped_at  # no step trained after the stop
    (stop_event,) = [e for e in events if e.message.startswith("Early stopping at step")]
    assert stop_event.data == {**outcome, "stopped_early_at_step": stopped_at}
    assert f"step {stopped_at}/{total_steps}" in stop_event.message
    # trained_tokens counts the steps really trained, not the epochs asked for.
    (intro,) = [e.message for e in events if e.message.startswith("Training on ")]
    tokens_per_epoch = int(re.search(r"\(([\d,]+) tokens\)", intro).group(1).replace(",", ""))  # type: ignore[union-attr]
    epochs_begun = -(-stopped_at // STEPS_PER_EPOCH)
    assert 0 < stopped_job.trained_tokens <= tokens_per_epoch * epochs_begun < tokens_per_epoch * N_EPOCHS


def test_the_best_checkpoint_has_the_lowest_validation_loss(live_server: LiveServer, stopped_job: Any) -> None:
    client = live_server.client()
    outcome = (stopped_job.model_extra or {})["openft"]
    (result_id,) = stopped_job.result_files
    rows = list(csv.DictReader(io.StringIO(client.files.content(result_id).text)))
    assert len(rows) == outcome["stopped_early_at_step"]
    full = {int(r["step"]): float(r["full_valid_loss"]) for r in rows if r["full_valid_loss"]}
    assert min(full.values()) == full[outcome["best_step"]] == pytest.approx(outcome["best_valid_loss"], rel=1e-6)
    assert min(float(r["valid_loss"]) for r in rows if r["valid_loss"]) == full[outcome["best_step"]]
    checkpoints = {c.step_number: c for c in client.fine_tuning.jobs.checkpoints.list(stopped_job.id)}
    assert outcome["best_step"] in checkpoints
    assert checkpoints[outcome["best_step"]].metrics.full_valid_loss == pytest.approx(outcome["best_valid_loss"])


def test_the_model_is_the_best_checkpoint(live_server: LiveServer, stopped_job: Any) -> None:
    client = live_server.client()
    best = (stopped_job.model_extra or {})["openft"]["best_step"]
    checkpoint = f"{stopped_job.fine_tuned_model}:ckpt-step-{best}"
    assert greedy_answers(client, stopped_job.fine_tuned_model) == greedy_answers(client, checkpoint)
