"""The supervised recipe end to end: ``python -m openft.training spec.json`` on openft/tiny-chat.

Three runs go in parallel, one thread each (two with the same seed, one with another): about
20-45 s on a 2-core machine. The model must learn a fixed answer well enough to say it back.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import model_directory
from openft.training.spec import TrainingSpec

pytestmark = pytest.mark.e2e

ANSWER = "Paris is the capital of France."
SYSTEM = "You are a geography bot."
QUESTIONS = [
    "What is the capital of France?",
    "Which city is the capital of France?",
    "Tell me France's capital.",
    "Name the capital of France.",
    "France's capital city is?",
    "Capital of France?",
    "What city is France's capital?",
    "Do you know the capital of France?",
    "Where is the French government seated?",
    "Which city is France's capital city?",
    "What's the capital of France?",
    "Please tell me the capital of France.",
]
N_EPOCHS = 12  # 144 steps of one example: about 4 s of training, enough to answer word for word
SEEDS = {"a": 42, "b": 42, "c": 7}


def write_jsonl(path: Path, questions: list[str]) -> str:
    lines = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": q},
                {"role": "assistant", "content": ANSWER},
            ]
        }
        for q in questions
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def read_events(output_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recipe")
    models_dir = root / "models"
    # Built once up front: three processes building the same directory at once is a race we don't test here.
    model_directory(find_base_model(TINY_CHAT), models_dir)
    train = write_jsonl(root / "train.jsonl", QUESTIONS)
    valid = write_jsonl(root / "valid.jsonl", ["Capital city of France?", "France has which capital?"])
    procs = {}
    for name, seed in SEEDS.items():
        spec = TrainingSpec(
            job_id=f"ftjob-{name}",
            method="supervised",
            base_model=TINY_CHAT,
            models_dir=str(models_dir),
            training_file=train,
            validation_file=valid,
            output_dir=str(root / name),
            n_epochs=N_EPOCHS,
            batch_size=1,
            learning_rate_multiplier=1.0,
            learning_rate=find_base_model(TINY_CHAT).lora_learning_rate,
            seed=seed,
            threads=1,
        )
        spec.write(root / f"{name}.json")
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "openft.training", str(root / f"{name}.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"run {name} failed:\n{stderr[-3000:]}"
        assert stdout == ""
    return {name: root / name for name in SEEDS}


def train_losses(output_dir: Path) -> list[float]:
    return [e["train_loss"] for e in read_events(output_dir) if e["kind"] == "metrics"]


def test_events_metrics_checkpoints_and_result(runs: dict[str, Path]) -> None:
    events = read_events(runs["a"])
    total = N_EPOCHS * len(QUESTIONS)
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, total + 1))
    assert {m["total_steps"] for m in metrics} == {total}
    assert [m["epoch"] for m in metrics] == [1 + i // len(QUESTIONS) for i in range(total)]
    tokens = [m["trained_tokens"] for m in metrics]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert all(m["tokens_per_second"] > 0 and 0 <= m["train_mean_token_accuracy"] <= 1 for m in metrics)
    # Sampled validation about 10 times, plus at every epoch end; the full set at every epoch end.
    eval_every = round(total / 10)
    expected = [s for s in range(1, total + 1) if s % eval_every == 0 or s % len(QUESTIONS) == 0]
    assert [m["step"] for m in metrics if "valid_loss" in m] == expected
    assert [m["step"] for m in metrics if "full_valid_loss" in m] == [12 * (i + 1) for i in range(N_EPOCHS)]

    checkpoints = [e for e in events if e["kind"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [12 * (i + 1) for i in range(N_EPOCHS)]
    assert {"step", "train_loss", "valid_loss", "full_valid_loss"} <= checkpoints[-1]["metrics"].keys()
    deleted = [e["step"] for e in events if e["kind"] == "checkpoint_deleted"]
    assert deleted == [c["step"] for c in checkpoints[:-3]]
    assert sorted(p.name for p in (runs["a"] / "checkpoints").iterdir()) == [
        f"step-{c['step']}" for c in sorted(checkpoints[-3:], key=lambda c: str(c["step"]))
    ]
    assert (runs["a"] / checkpoints[-1]["path"] / "adapter_model.safetensors").exists()

    result = events[-1]
    assert result["kind"] == "result" and not any(e["kind"] == "error" for e in events)
    assert result["adapter_path"] == "adapter" and result["results_csv"] == "results.csv"
    assert result["trained_tokens"] == tokens[-1] and result["n_examples"] == 12 and result["total_steps"] == total
    adapter = runs["a"] / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "tokenizer_config.json").exists()


def test_results_csv_has_a_row_per_step(runs: dict[str, Path]) -> None:
    with (runs["a"] / "results.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    metrics = [e for e in read_events(runs["a"]) if e["kind"] == "metrics"]
    assert len(rows) == 1 + len(metrics)
    for row, m in zip(rows[1:], metrics, strict=True):
        assert int(row[0]) == m["step"]
        assert float(row[1]) == pytest.approx(m["train_loss"], rel=1e-6)
        assert (row[3] == "") == ("valid_loss" not in m)


def test_loss_goes_down(runs: dict[str, Path]) -> None:
    losses = train_losses(runs["a"])
    first, last = losses[: len(QUESTIONS)], losses[-len(QUESTIONS) :]
    assert sum(last) / len(last) < sum(first) / len(first) / 2
    last_epoch = [e for e in read_events(runs["a"]) if e["kind"] == "metrics"][-len(QUESTIONS) :]
    assert sum(e["train_mean_token_accuracy"] for e in last_epoch) / len(last_epoch) > 0.85


def test_same_seed_same_losses_other_seed_other_losses(runs: dict[str, Path]) -> None:
    assert train_losses(runs["a"]) == train_losses(runs["b"])
    assert train_losses(runs["a"]) != train_losses(runs["c"])


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_the_fine_tuned_model_says_the_answer(runs: dict[str, Path]) -> None:
    import torch
    from peft import PeftModel

    from openft.models.loader import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(find_base_model(TINY_CHAT), runs["a"].parent / "models")
    model = PeftModel.from_pretrained(model, runs["a"] / "adapter").eval()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=48, do_sample=False)
    reply = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert reply == ANSWER


def test_bad_training_data_is_an_error_line_and_exit_status_1(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"prompt": "Hi", "completion": "Yo"}) + "\n{broken\n")
    spec = TrainingSpec(
        job_id="ftjob-bad",
        method="supervised",
        base_model=TINY_CHAT,
        models_dir=str(tmp_path / "models"),
        training_file=str(train),
        validation_file=None,
        output_dir=str(tmp_path / "out"),
        n_epochs=1,
        batch_size=1,
        learning_rate_multiplier=1.0,
        learning_rate=1e-3,
        seed=0,
        threads=1,
    )
    spec.write(tmp_path / "spec.json")
    proc = subprocess.run(
        [sys.executable, "-m", "openft.training", str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    error = read_events(tmp_path / "out")[-1]
    assert error["kind"] == "error" and error["code"] == "invalid_training_file"
    assert error["param"] == "training_file" and "train.jsonl line 2: invalid JSON" in error["message"]
