"""Helpers of the fault-injection tier: training processes on openft/tiny-chat, and reading what they wrote."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.models.loader import model_directory
from openft.training.spec import TrainingSpec
from training_processes import training_pids

ASSETS = Path(__file__).parents[1] / "assets"


def tiny_spec(root: Path, name: str, models_dir: Path, **overrides: Any) -> TrainingSpec:
    """A small supervised run on the bundled tiny files: 12 examples, batch 1."""
    model_directory(find_base_model(TINY_CHAT), models_dir)  # built once, before processes race for it
    values: dict[str, Any] = {
        "job_id": f"ftjob-{name}",
        "method": "supervised",
        "base_model": TINY_CHAT,
        "models_dir": str(models_dir),
        "training_file": str(ASSETS / "tiny_train.jsonl"),
        "validation_file": str(ASSETS / "tiny_valid.jsonl"),
        "output_dir": str(root / name),
        "n_epochs": 3,
        "batch_size": 1,
        "learning_rate_multiplier": 1.0,
        "learning_rate": find_base_model(TINY_CHAT).lora_learning_rate,
        "seed": 11,
        "threads": 1,
        "save_state_every_steps": 2,
    }
    values.update(overrides)
    return TrainingSpec(**values)


def start_training(spec: TrainingSpec, spec_path: Path) -> subprocess.Popen[bytes]:
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec.write(spec_path)
    log = (spec_path.parent / f"{spec_path.stem}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "openft.training", str(spec_path)], stdout=log, stderr=log)


def read_events(output_dir: Path) -> list[dict[str, Any]]:
    path = output_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_step(output_dir: Path) -> int:
    steps = [e["step"] for e in read_events(output_dir) if e["kind"] == "metrics"]
    return max(steps, default=0)


def wait_for_step(process: subprocess.Popen[bytes], output_dir: Path, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while last_step(output_dir) < step:
        if process.poll() is not None:
            raise AssertionError(f"training exited with {process.returncode} before step {step}")
        if time.time() > deadline:
            raise AssertionError(f"training did not reach step {step} in {timeout}s")
        time.sleep(0.05)


def losses_by_step(output_dir: Path) -> dict[int, float]:
    """The training loss of every step; a step run twice (after a resume) must report the same loss."""
    seen: dict[int, float] = {}
    for event in read_events(output_dir):
        if event["kind"] == "metrics":
            step, loss = event["step"], event["train_loss"]
            assert seen.get(step, loss) == loss, f"step {step} gave {loss} after {seen[step]}"
            seen[step] = loss
    return seen


def adapter_weights(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


class ServerProcess:
    """A live ``openft serve`` on a fixed home and port that a test can kill and start again."""

    def __init__(self, home: Path, models_dir: Path, env: dict[str, str]):
        import socket

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "models").exists():
            (home / "models").symlink_to(models_dir)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120) -> None:
        import os

        import httpx

        env = {
            **os.environ,
            "OPENFT_HOME": str(self.home),
            "OPENFT_WORKER_POLL_SECONDS": "0.05",
            "OPENFT_TRAINING_THREADS": "1",
            **self.env,
        }
        env.pop("OPENFT_DATABASE_URL", None)
        log = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "openft", "serve", "--port", str(self.port)], env=env, stdout=log, stderr=log
        )
        deadline = time.time() + timeout
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.time() > deadline:
                self.process.kill()
                raise RuntimeError(f"openft serve did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (its training process dies with it)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def client(self) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key="sk-local", max_retries=0, timeout=120)


def training_pid(job_id: str) -> int | None:
    """The pid of the training process of ``job_id`` on this machine."""
    pids = training_pids(job_id)
    return pids[0] if pids else None


def job_losses(client: Any, job_id: str) -> dict[int, float]:
    """Training loss by step from the job's metrics events (each step must appear once)."""
    events = [e for e in client.fine_tuning.jobs.list_events(job_id, limit=1000) if e.type == "metrics"]
    steps = [e.data["step"] for e in events]
    assert len(steps) == len(set(steps)), f"duplicate metrics events: {sorted(steps)}"
    return {e.data["step"]: e.data["train_loss"] for e in events}


def wait_job(client: Any, job_id: str, statuses: tuple[str, ...], timeout: float = 600) -> Any:
    deadline = time.time() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        if time.time() > deadline:
            raise AssertionError(f"job {job_id} still {job.status} after {timeout}s, wanted {statuses}")
        time.sleep(0.1)


def wait_job_step(client: Any, job_id: str, step: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while True:
        events = client.fine_tuning.jobs.list_events(job_id, limit=5).data
        if any(e.type == "metrics" and e.data["step"] >= step for e in events):
            return
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            raise AssertionError(f"job {job_id} ended ({job.status}) before step {step}")
        if time.time() > deadline:
            raise AssertionError(f"job {job_id} did not reach step {step} in {timeout}s")
        time.sleep(0.05)
