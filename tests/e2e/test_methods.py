"""DPO, full fine-tuning and the legacy prompt/completion format against a live server, with the official
client, on openft/tiny-chat (and a copy of it without a chat template, as a base model)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LiveServer
from openai import OpenAI

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import model_directory

# Jobs and first loads of models take minutes on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
TERMINAL = ("succeeded", "failed", "cancelled")
ANSWER = "Paris is the capital of France."
QUESTIONS = [
    "Hello!",
    "Hi there.",
    "Good morning.",
    "What is the capital of France?",
    "Name a city.",
    "Tell me something.",
    "Which city is in France?",
    "Say something true.",
    "Any fact?",
    "What do you know?",
]


def upload(client: OpenAI, name: str, lines: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.create(file=(name, data), purpose="fine-tune").id


def wait(client: OpenAI, job_id: str, timeout: float = 900) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


def events(client: OpenAI, job_id: str) -> list[Any]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=200))))


def results_csv(client: OpenAI, job: Any) -> list[dict[str, str]]:
    (result_id,) = job.result_files
    return list(csv.DictReader(io.StringIO(client.files.content(result_id).text)))


def pair(question: str, good: str, bad: str) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": question}]},
        "preferred_output": [{"role": "assistant", "content": good}],
        "non_preferred_output": [{"role": "assistant", "content": bad}],
    }


def chats(client: OpenAI, model: str) -> str:
    # The first request for a model loads it (and a full fine-tune is a model of its own): minutes on a busy CPU.
    reply = client.with_options(timeout=600).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello!"}], max_tokens=24, temperature=0
    )
    assert reply.model == model and reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    return reply.choices[0].message.content or ""


@pytest.fixture(scope="module")
def dpo_job(live_server: LiveServer) -> Any:
    client = live_server.client()
    train = [pair(q, ANSWER, "I refuse to answer.") for q in QUESTIONS]
    valid = [pair("Good evening.", ANSWER, "I refuse to answer."), pair("Hey!", ANSWER, "No.")]
    job = client.fine_tuning.jobs.create(
        model=TINY_CHAT,
        training_file=upload(client, "prefs.jsonl", train),
        validation_file=upload(client, "prefs_valid.jsonl", valid),
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2, "batch_size": 2}}},
        seed=11,
    )
    assert job.method.type == "dpo" and job.status == "validating_files"
    return wait(client, job.id)


def test_dpo_job_succeeds_with_resolved_hyperparameters(dpo_job: Any) -> None:
    assert dpo_job.status == "succeeded", dpo_job.error
    assert dpo_job.method.dpo.hyperparameters.beta == 0.2
    assert (dpo_job.hyperparameters.n_epochs, dpo_job.hyperparameters.batch_size) == (2, 2)
    assert dpo_job.hyperparameters.learning_rate_multiplier == 1.0
    assert dpo_job.trained_tokens and dpo_job.trained_tokens > 0


def test_dpo_metrics_events_and_results_carry_reward_statistics(live_server: LiveServer, dpo_job: Any) -> None:
    client = live_server.client()
    metrics = [e.data for e in events(client, dpo_job.id) if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 11))  # 2 epochs of 5 steps of 2 pairs
    # Before the first update the policy is the reference: every reward is 0 and the loss is log 2.
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert abs(metrics[0]["train_rewards_margin"]) < 1e-3
    for m in metrics:
        assert {"train_rewards_chosen", "train_rewards_rejected", "train_rewards_margin"} <= set(m)
        assert m["train_rewards_margin"] == pytest.approx(m["train_rewards_chosen"] - m["train_rewards_rejected"])
        assert 0 <= m["train_rewards_accuracy"] <= 1
    # It learned the preference, on training and on held-out pairs.
    assert metrics[-1]["train_rewards_margin"] > 0.1 and metrics[-1]["train_rewards_accuracy"] == 1.0
    assert metrics[-1]["full_valid_rewards_margin"] > 0 and metrics[-1]["full_valid_rewards_accuracy"] > 0.5
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]

    rows = results_csv(client, dpo_job)
    assert list(rows[0])[:5] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert {"train_rewards_margin", "train_rewards_accuracy", "valid_rewards_margin", "valid_rewards_accuracy"} <= set(
        rows[0]
    )
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert float(rows[-1]["train_rewards_margin"]) == pytest.approx(metrics[-1]["train_rewards_margin"], rel=1e-6)
    assert rows[-1]["valid_rewards_accuracy"] != ""


def test_dpo_model_and_checkpoint_chat(live_server: LiveServer, dpo_job: Any) -> None:
    client = live_server.client()
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(dpo_job.id))
    assert sorted(c.step_number for c in checkpoints) == [5, 10]
    assert all("train_rewards_margin" in c.metrics.model_dump() for c in checkpoints)
    for model in (dpo_job.fine_tuned_model, checkpoints[-1].fine_tuned_model_checkpoint):
        chats(client, model)


def test_full_fine_tuning_trains_every_weight_and_the_model_chats(live_server: LiveServer) -> None:
    client = live_server.client()
    train = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}]} for q in QUESTIONS
    ]
    job = client.fine_tuning.jobs.create(
        model=TINY_CHAT,
        training_file=upload(client, "full.jsonl", train),
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 6, "batch_size": 1, "learning_rate_multiplier": 3},
                "openft": {"training_type": "full"},
            },
        },
        seed=5,
    )
    assert job.method.supervised.model_dump()["openft"]["training_type"] == "full"
    job = wait(client, job.id)
    assert job.status == "succeeded", job.error
    loaded = next(e for e in events(client, job.id) if e.message.startswith("Loaded model"))
    assert "(full fine-tuning)" in loaded.message and loaded.data["training_type"] == "full"
    # The whole model was saved, not an adapter.
    saved = live_server.home / "jobs" / job.id / "adapter"
    assert (saved / "config.json").is_file() and not (saved / "adapter_config.json").exists()
    checkpoint = next(iter(client.fine_tuning.jobs.checkpoints.list(job.id)))
    assert chats(client, job.fine_tuned_model).startswith("Paris is the capital")
    assert chats(client, checkpoint.fine_tuned_model_checkpoint)
    assert chats(client, TINY_CHAT) != chats(client, job.fine_tuned_model)


@pytest.fixture(scope="module")
def base_model(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-chat without its chat template, registered as the base model ``tiny-base``; its directory."""
    base = find_base_model(TINY_CHAT)
    assert base is not None
    directory = tmp_path_factory.mktemp("base") / "tiny-base"
    shutil.copytree(model_directory(base, live_server.home / "models"), directory)
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    env = {**os.environ, "OPENFT_HOME": str(live_server.home)}
    env.pop("OPENFT_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "openft", "models", "add", "tiny-base", str(directory)], env=env, check=True)
    return directory


def test_prompt_completion_job_on_a_base_model_trains_on_plain_text(live_server: LiveServer, base_model: Path) -> None:
    from transformers import AutoTokenizer

    client = live_server.client()
    train = [{"prompt": f"Q: {q}\nA:", "completion": " " + ANSWER} for q in QUESTIONS]
    job = client.fine_tuning.jobs.create(
        model="tiny-base",
        training_file=upload(client, "legacy.jsonl", train),
        # A registered directory's LoRA rate (2e-4) suits real models; tiny-chat learns at 1e-2.
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 50}},
        },
        seed=1,
    )
    job = wait(client, job.id)
    assert job.status == "succeeded", job.error
    # Plain text, no chat template: each example is the prompt, the completion and EOS, nothing more.
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    per_epoch = sum(
        len(tokenizer(line["prompt"])["input_ids"])
        + len(tokenizer(line["completion"], add_special_tokens=False)["input_ids"])
        + 1
        for line in train
    )
    assert job.trained_tokens == 4 * per_epoch
    rows = results_csv(client, job)
    assert float(rows[-1]["train_loss"]) < 0.75 * float(rows[0]["train_loss"])
    completion = client.with_options(timeout=600).completions.create(
        model=job.fine_tuned_model, prompt="Q: Hello!\nA:", max_tokens=12, temperature=0
    )
    assert completion.object == "text_completion" and completion.choices[0].text
