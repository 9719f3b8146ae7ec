"""What the worker makes of the event lines a training process writes (``training/events.py``).

Each line becomes, at most once, a job event (metrics under OpenAI's metric names), a checkpoint
(published to blob storage and listed), a new ``estimated_finish``, or part of the outcome the worker
acts on once the process exits (``result``, ``error``, ``stopped``), kept on the ``Running`` job.
Each write is made only while the worker still holds the job (``Running.claim``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openft import ids
from openft.files.service import FileService
from openft.jobs import status as st
from openft.jobs.claim import Claim
from openft.jobs.executors import Handle
from openft.jobs.recovery import TRAINING, LineEvents
from openft.jobs.run_report import observe_line
from openft.settings import Settings
from openft.store import Store
from openft.store.recovery import add_checkpoint_once, delete_checkpoints
from openft.store.rows import CheckpointRow, JobRow


def metrics_message(m: dict[str, Any]) -> str:
    """The event message of a metrics line, as OpenAI words it ("Step 3/10: training loss=1.23")."""
    text = f"Step {m['step']}/{m['total_steps']}: training loss={m['train_loss']:.2f}"
    if m.get("valid_loss") is not None:
        text += f", validation loss={m['valid_loss']:.2f}"
    if m.get("full_valid_loss") is not None:
        text += f", full validation loss={m['full_valid_loss']:.2f}"
    if m.get("train_mean_reward") is not None:
        text += f", train mean reward={m['train_mean_reward']:.2f}"
    if m.get("full_valid_mean_reward") is not None:
        text += f", full validation mean reward={m['full_valid_mean_reward']:.2f}"
    elif m.get("valid_mean_reward") is not None:
        text += f", validation mean reward={m['valid_mean_reward']:.2f}"
    return text


METRIC_KEYS = (
    "step",
    "total_steps",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
    "tokens_per_second",
    # DPO (recipes/dpo.py): implicit rewards beta * (log p_policy - log p_reference) of each output
    *(
        f"{split}_rewards_{name}"
        for split in ("train", "valid", "full_valid")
        for name in ("chosen", "rejected", "margin", "accuracy")
    ),
    # Reinforcement (recipes/reinforcement.py): the grader's rewards
    "train_mean_reward",
    "train_reward_std",
    "train_grader_error_rate",
    "valid_mean_reward",
    "full_valid_mean_reward",
    "kl",
    "completion_tokens_mean",
)


@dataclass
class Running:
    """The job this worker is training right now."""

    job: JobRow
    handle: Handle
    output_dir: Path
    events: LineEvents
    """Writes the training process's event lines as job events, each once (see jobs/recovery.py)."""
    claim: Claim
    """The worker's hold on the job, heartbeating while it trains; every write here is conditional on it."""
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    kill_sent_at: float | None = None
    stop_sent_at: float | None = None
    """When the process was asked to save its state and stop (a pause)."""
    stopped_step: int | None = None
    """The step at which it did (its ``stopped`` line)."""
    extra: dict[str, Any] = field(default_factory=dict)


def record_line(run: Running, line: dict[str, Any], *, store: Store, files: FileService, settings: Settings) -> None:
    """Record one line: an event (once, see ``jobs/recovery.py``), a checkpoint, the ETA, or the outcome
    (``result``, ``error``, ``stopped``) on ``run`` for the worker to act on when the process exits."""
    kind = line.get("kind")
    job_id = run.job.id
    observe_line(run.extra, line)  # for the summary the job's events end with (jobs/run_report.py)
    if kind == "message":
        run.events.append(line, line["message"], level=line.get("level", "info"), data=line.get("data"))
    elif kind == "metrics":
        data = {k: line[k] for k in METRIC_KEYS if line.get(k) is not None}
        run.events.append(line, metrics_message(line), type="metrics", data=data)
        step, total, elapsed = line["step"], line["total_steps"], line.get("elapsed_seconds")
        if elapsed and step:
            eta = int(time.time() + (total - step) * (elapsed / step))
            store.update_job(job_id, expect_status=st.RUNNING, expect_worker=run.claim.worker_id, estimated_finish=eta)
    elif kind == "checkpoint" and run.events.is_new(line):
        name = ids.checkpoint_model_name(run.job.model_name, line["step"])
        adapter = run.output_dir / line["path"]
        files.blobs.publish(str(adapter.relative_to(settings.home)))
        add_checkpoint_once(
            store,
            CheckpointRow(
                id=ids.new_checkpoint_id(),
                job_id=job_id,
                organization_id=run.job.organization_id,
                created_at=int(time.time()),
                step_number=line["step"],
                fine_tuned_model_checkpoint=name,
                metrics={k: v for k, v in line.get("metrics", {}).items() if v is not None},
                adapter_path=str(adapter.relative_to(settings.home)),
            ),
            held_by=run.claim.worker_id,
            statuses=TRAINING,
        )
        run.events.append(line, f"Checkpoint created at step {line['step']} with Snapshot ID: {name}")
    elif kind == "checkpoint_deleted":
        delete_checkpoints(store, job_id, held_by=run.claim.worker_id, statuses=TRAINING, step=line["step"])
    elif kind == "result":
        run.result = line
    elif kind == "error":
        run.error = {"code": line["code"], "message": line["message"], "param": line.get("param")}
    elif kind == "stopped":
        run.stopped_step = line["step"]
