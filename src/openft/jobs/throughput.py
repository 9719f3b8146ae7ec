"""This server's measured training throughput, per model, method, training type and device.

A record holds tokens trained per second (training steps only) and the seconds a run spends around
them (process start, model load, tokenizing, evaluations, saving), so a job of ``N`` trained tokens
is expected to run ``startup_seconds + N / tokens_per_second``. Records live in
``$OPENFT_HOME/cache/throughput/`` as one small JSON file per key. Each succeeded job replaces its
key's record (``previous_jobs``); a key with no record is measured once by a short calibration
(``calibration``): the job's own training process run on the first examples of its file for a few
steps, within ``OPENFT_ESTIMATE_CALIBRATION_SECONDS``, then killed. A lock file per key makes
concurrent estimates wait for one calibration instead of running several.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORWARD_SHARE = 1 / 3
"""A forward pass alone (a validation evaluation) costs about a third of a training step per token."""
CALIBRATION_STEPS = 4
"""Steps a calibration measures (the first one, which warms up, counts as start-up)."""
EVENTS_FILE = "events.jsonl"


@dataclass(frozen=True)
class ThroughputKey:
    """What a training run's speed depends on here."""

    model: str
    method: str
    training_type: str
    device: str
    threads: int

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Throughput:
    """A measured rate; ``source`` is ``previous_jobs`` or ``calibration``."""

    tokens_per_second: float
    startup_seconds: float
    source: str
    measured_at: float
    job_id: str | None = None

    def seconds_for(self, trained_tokens: int, eval_tokens: int = 0) -> float:
        """Expected running time of a job that trains ``trained_tokens`` tokens and scores ``eval_tokens``
        validation tokens."""
        return self.startup_seconds + (trained_tokens + FORWARD_SHARE * eval_tokens) / self.tokens_per_second


def _path(cache_dir: Path, key: ThroughputKey) -> Path:
    return cache_dir / f"{key.digest()}.json"


def read(cache_dir: Path, key: ThroughputKey) -> Throughput | None:
    """The record of ``key``, or None when this server has none."""
    try:
        data = json.loads(_path(cache_dir, key).read_text())
        return Throughput(**{k: data[k] for k in Throughput.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write(cache_dir: Path, key: ThroughputKey, record: Throughput) -> None:
    """Replace ``key``'s record (atomically: readers see the old or the new one)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=cache_dir)
    with os.fdopen(fd, "w") as f:
        json.dump({**asdict(record), "key": asdict(key)}, f)
    os.replace(tmp, _path(cache_dir, key))


def record_job(
    cache_dir: Path,
    key: ThroughputKey,
    *,
    job_id: str,
    last_metrics: dict[str, Any],
    seconds: float,
    eval_tokens: int = 0,
) -> None:
    """Keep a succeeded job's throughput: its final tokens/s, and the rest of its running time, less its
    validation (``eval_tokens`` scored, which differ from job to job), as start-up."""
    tokens = float(last_metrics.get("trained_tokens") or 0)
    rate = float(last_metrics.get("tokens_per_second") or 0)
    if tokens <= 0 or rate <= 0 or seconds <= 0:
        return
    startup = max(0.0, seconds - (tokens + FORWARD_SHARE * eval_tokens) / rate)
    write(cache_dir, key, Throughput(rate, startup, "previous_jobs", time.time(), job_id))


@contextlib.contextmanager
def _locked(cache_dir: Path, key: ThroughputKey) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{key.digest()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def measured_or_calibrated(
    cache_dir: Path, key: ThroughputKey, spec: dict[str, Any], sample: list[str], *, limit_seconds: float
) -> Throughput | None:
    """``key``'s record, calibrating it first when there is none; None when a calibration could not measure.

    Args:
        cache_dir: Where records live.
        key: The model, method, training type and device.
        spec: The job's training spec fields (``training/spec.py``) but its paths, epochs and checkpoints.
        sample: JSONL lines to train on (the first examples of the job's file).
        limit_seconds: The most a calibration may run.
    """
    found = read(cache_dir, key)
    if found is not None or limit_seconds <= 0:
        return found
    with _locked(cache_dir, key):
        found = read(cache_dir, key)  # measured by a concurrent estimate while this one waited
        if found is not None:
            return found
        measured = calibrate(spec, sample, limit_seconds=limit_seconds)
        if measured is not None:
            write(cache_dir, key, measured)
        return measured


def calibrate(spec: dict[str, Any], sample: list[str], *, limit_seconds: float) -> Throughput | None:
    """Run a training process on ``sample`` for a few steps and measure it; None if it measured nothing."""
    from openft.jobs.executors.local import die_with_parent, training_env

    batch = int(spec["batch_size"])
    lines = [sample[i % len(sample)] for i in range((CALIBRATION_STEPS + 1) * batch)]
    workdir = Path(tempfile.mkdtemp(prefix="openft-calibration-"))
    try:
        (workdir / "train.jsonl").write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))
        run_spec = {
            **spec,
            "job_id": "calibration",
            "training_file": str(workdir / "train.jsonl"),
            "validation_file": None,
            "output_dir": str(workdir / "out"),
            "n_epochs": 1,
            "keep_checkpoints": 0,
            "save_state_every_steps": 10**9,
            "integrations": [],
            "resume_from": None,
        }
        (workdir / "spec.json").write_text(json.dumps(run_spec))
        started = time.time()
        with open(workdir / "train.log", "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "openft.training", str(workdir / "spec.json")],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                env=training_env(),
                cwd=str(workdir),
            )
            try:
                metrics = _wait_for_steps(process, workdir / "out" / EVENTS_FILE, started + limit_seconds)
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, 9)
                process.wait()
        return _throughput(metrics, started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_steps(process: subprocess.Popen[bytes], events: Path, deadline: float) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = []
    offset = 0
    while time.time() < deadline and len(metrics) < CALIBRATION_STEPS and process.poll() is None:
        time.sleep(0.2)
        try:
            with events.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            continue
        end = chunk.rfind(b"\n")
        if end < 0:
            continue
        offset += end + 1
        for raw in chunk[: end + 1].splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if line.get("kind") == "metrics":
                    metrics.append(line)
    return metrics


def _throughput(metrics: list[dict[str, Any]], started: float) -> Throughput | None:
    """Steady tokens/s from the steps after the first; the first step's end, less its share, is start-up."""
    if not metrics:
        return None

    def train_seconds(m: dict[str, Any]) -> float:
        return float(m["trained_tokens"]) / float(m["tokens_per_second"])

    first, last = metrics[0], metrics[-1]
    if len(metrics) > 1 and train_seconds(last) > train_seconds(first):
        rate = (last["trained_tokens"] - first["trained_tokens"]) / (train_seconds(last) - train_seconds(first))
    else:
        rate = float(first["tokens_per_second"])
    startup = max(0.0, float(first["time"]) - started - first["trained_tokens"] / rate)
    return Throughput(rate, startup, "calibration", time.time())
