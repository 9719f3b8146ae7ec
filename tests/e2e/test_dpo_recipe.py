"""The DPO recipe end to end (``python -m openft.training spec.json``, method ``dpo``) on openft/tiny-chat:
a run stopped by SIGTERM (what a pause sends) and resumed from its saved state ends with the same
losses and rewards as a run never stopped; full fine-tuning trains with no reference copy in memory."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import model_directory
from openft.training.protocol import latest_state_dir
from openft.training.spec import TrainingSpec

pytestmark = pytest.mark.e2e

QUESTIONS = [f"Question number {i}?" for i in range(10)]


def write_pairs(path: Path, questions: list[str]) -> str:
    lines = [
        {
            "input": {"messages": [{"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": "Paris is the capital of France."}],
            "non_preferred_output": [{"role": "assistant", "content": "I will not say."}],
        }
        for q in questions
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def read_events(output_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output_dir / "events.jsonl").read_text().splitlines()]


def run(spec: TrainingSpec, path: Path) -> subprocess.Popen[str]:
    spec.write(path)
    return subprocess.Popen(
        [sys.executable, "-m", "openft.training", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> TrainingSpec:
    root = tmp_path_factory.mktemp("dpo")
    models_dir = root / "models"
    base = find_base_model(TINY_CHAT)
    assert base is not None
    model_directory(base, models_dir)
    return TrainingSpec(
        job_id="ftjob-dpo",
        method="dpo",
        base_model=TINY_CHAT,
        models_dir=str(models_dir),
        training_file=write_pairs(root / "train.jsonl", QUESTIONS),
        validation_file=write_pairs(root / "valid.jsonl", ["Another question?", "One more?"]),
        output_dir=str(root / "unused"),
        n_epochs=3,
        batch_size=2,
        learning_rate_multiplier=1.0,
        learning_rate=base.lora_learning_rate,
        seed=4,
        threads=1,
        beta=0.2,
        save_state_every_steps=1,
    )


def metrics_by_step(output_dir: Path) -> dict[int, dict[str, Any]]:
    keys = ("train_loss", "train_rewards_chosen", "train_rewards_rejected", "valid_loss", "full_valid_rewards_margin")
    return {e["step"]: {k: e.get(k) for k in keys} for e in read_events(output_dir) if e["kind"] == "metrics"}


@pytest.mark.timeout(1800)  # three runs; minutes each on a busy 2-core machine
def test_stopped_and_resumed_run_matches_an_uninterrupted_one(spec: TrainingSpec, tmp_path: Path) -> None:
    whole = dataclasses.replace(spec, output_dir=str(tmp_path / "whole"))
    stopped = dataclasses.replace(spec, output_dir=str(tmp_path / "stopped"))
    first, second = run(whole, tmp_path / "whole.json"), run(stopped, tmp_path / "stopped.json")
    events_file = tmp_path / "stopped" / "events.jsonl"
    deadline = time.time() + 300
    while not (events_file.exists() and '"kind": "metrics"' in events_file.read_text()):
        assert time.time() < deadline and second.poll() is None, "no step was reported"
        time.sleep(0.05)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=300) == 0, second.stderr.read() if second.stderr else ""
    assert first.wait(timeout=600) == 0, first.stderr.read() if first.stderr else ""

    events = read_events(tmp_path / "stopped")
    (stop,) = [e for e in events if e["kind"] == "stopped"]
    assert not any(e["kind"] == "result" for e in events) and stop["step"] < 15
    state = latest_state_dir(tmp_path / "stopped")
    assert state is not None
    resumed = dataclasses.replace(stopped, resume_from=str(state))
    assert run(resumed, tmp_path / "resumed.json").wait(timeout=600) == 0

    assert metrics_by_step(tmp_path / "stopped") == metrics_by_step(tmp_path / "whole")
    assert sorted(metrics_by_step(tmp_path / "whole")) == list(range(1, 16))
    csv_rows = (tmp_path / "stopped" / "results.csv").read_text().splitlines()
    assert csv_rows == (tmp_path / "whole" / "results.csv").read_text().splitlines()


def test_full_fine_tuning_dpo_saves_a_whole_model(spec: TrainingSpec, tmp_path: Path) -> None:
    full = dataclasses.replace(
        spec, output_dir=str(tmp_path / "full"), training_type="full", n_epochs=1, learning_rate=1e-3
    )
    assert run(full, tmp_path / "full.json").wait(timeout=600) == 0
    events = read_events(tmp_path / "full")
    loaded = next(e for e in events if e["kind"] == "message" and e["message"].startswith("Loaded model"))
    assert loaded["data"]["training_type"] == "full" and "(full fine-tuning)" in loaded["message"]
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert metrics[0]["train_loss"] == pytest.approx(0.6931, abs=1e-3)  # the policy starts as the reference
    assert metrics[-1]["train_rewards_margin"] > 0
    saved = tmp_path / "full" / "adapter"
    assert (saved / "config.json").is_file() and (saved / "model.safetensors").is_file()
    assert not (saved / "adapter_config.json").exists()
