"""The reinforcement recipe end to end: ``python -m openft.training spec.json`` on openft/tiny-chat.

A run paused by SIGTERM after its first step and resumed from its saved state ends with the same
rewards, losses and results as the same run never paused (sampling RNG and LoRA weights included).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openft.graders import parse_grader
from openft.training.protocol import latest_state_dir
from openft.training.spec import TrainingSpec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
# Continuous and computed in-process: every group has a spread of rewards, so every step trains.
GRADER = {
    "type": "text_similarity",
    "name": "close_to_hello",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}} there, nice to meet you",
    "evaluation_metric": "fuzzy_match",
}


def _spec(output_dir: Path, models_dir: Path, resume_from: str | None = None) -> Path:
    output_dir.mkdir(exist_ok=True)
    spec = TrainingSpec(
        job_id="ftjob-rft-resume",
        method="reinforcement",
        base_model="openft/tiny-chat",
        models_dir=str(models_dir),
        training_file=str(ASSETS / "rft_train.jsonl"),
        validation_file=str(ASSETS / "rft_valid.jsonl"),
        output_dir=str(output_dir),
        n_epochs=1,
        batch_size=2,
        learning_rate_multiplier=1.0,
        learning_rate=1e-2,
        seed=11,
        threads=1,
        grader=parse_grader(GRADER),
        compute_multiplier=0.75,
        reasoning_effort="low",
        save_state_every_steps=1,
        resume_from=resume_from,
    )
    path = output_dir / f"spec-{int(resume_from is not None)}.json"
    spec.write(path)
    return path


def _events(output_dir: Path) -> list[dict[str, object]]:
    path = output_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _train(spec_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "openft.training", str(spec_path)])


def test_paused_and_resumed_run_matches_an_uninterrupted_one(tmp_path: Path, models_dir: Path) -> None:
    whole = _train(_spec(tmp_path / "whole", models_dir))
    paused_dir = tmp_path / "paused"
    paused = _train(_spec(paused_dir, models_dir))
    deadline = time.time() + 600
    while not any(e["kind"] == "metrics" for e in _events(paused_dir)):
        assert paused.poll() is None and time.time() < deadline, "the run ended before its first step was seen"
        time.sleep(0.05)
    paused.terminate()
    assert paused.wait(timeout=600) == 0
    stopped = [e for e in _events(paused_dir) if e["kind"] == "stopped"]
    assert len(stopped) == 1 and not any(e["kind"] == "result" for e in _events(paused_dir))
    state = latest_state_dir(paused_dir)
    assert state is not None

    resumed = _train(_spec(paused_dir, models_dir, resume_from=str(state)))
    assert resumed.wait(timeout=600) == 0
    assert whole.wait(timeout=600) == 0

    def rows(output_dir: Path) -> list[dict[str, object]]:
        keep = ("step", "train_loss", "train_mean_reward", "train_reward_std", "kl", "full_valid_mean_reward")
        by_step = {e["step"]: e for e in _events(output_dir) if e["kind"] == "metrics"}
        return [{k: by_step[s].get(k) for k in keep} for s in sorted(by_step)]

    assert [r["step"] for r in rows(tmp_path / "whole")] == [1, 2, 3, 4, 5]
    assert rows(paused_dir) == rows(tmp_path / "whole")
    assert any(r["train_loss"] != 0.0 for r in rows(paused_dir))  # the policy really trained
    assert (paused_dir / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()
