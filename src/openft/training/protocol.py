"""What a training process leaves for the worker that runs it: event lines and its output directory.

The one seam between ``jobs/`` and ``training/`` besides the spec (``training/spec.py``): the
worker imports this module (no torch, no recipe code) and nothing else of training.

The training process appends one JSON object per line to ``{output_dir}/events.jsonl`` (and
flushes after each line); the worker tails that file and turns lines into job events,
checkpoints and the job's final state. Kinds of line:

``{"kind": "message", "level": "info"|"warn"|"error", "message": str, "data": {...}}``
    becomes a ``fine_tuning.job.event`` of type ``message``.
``{"kind": "metrics", "step": int, "total_steps": int, "train_loss": float,
  "train_mean_token_accuracy": float, ["valid_loss", "valid_mean_token_accuracy",
  "full_valid_loss", "full_valid_mean_token_accuracy"], "epoch": int, "trained_tokens": int,
  "tokens_per_second": float, "elapsed_seconds": float}``
    becomes a ``metrics`` event (OpenAI's message text) and updates ``estimated_finish``.
``{"kind": "checkpoint", "step": int, "path": "checkpoints/step-N", "metrics": {...}}``
    a servable LoRA adapter directory (relative to output_dir) -> ``fine_tuning.job.checkpoint``.
``{"kind": "checkpoint_deleted", "step": int}``
    an older checkpoint was removed to keep the last ``keep_checkpoints``.
``{"kind": "result", "adapter_path": "adapter", "results_csv": "results.csv", "trained_tokens": int,
  "hyperparameters": {...}}``
    the run succeeded; the last line a successful run writes.
``{"kind": "error", "code": str, "message": str, "param": str | None}``
    the run failed for a reason the user can act on (the process then exits non-zero).
``{"kind": "stopped", "step": int}``
    the run was asked to stop (SIGTERM: a pause or a shutdown), saved a full state and a
    checkpoint at ``step`` and exits 0 without a result; it continues from there when resumed.

Files in the output directory: ``events.jsonl``, ``train.log`` (the process's stdout and stderr
when the executor redirects them) and ``state/step-N/`` (full training states, see
``training/checkpointing.py``: a directory named ``step-N`` is complete; a newer state replaces it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
"""Where a training process's stdout and stderr go, in its job's output directory."""
STATE_DIR = "state"
TENSORS_FILE = "tensors.pt"
PROGRESS_FILE = "progress.json"


class EventReader:
    """Reads complete lines appended since the last call (a partial last line waits for its newline)."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = path
        self.offset = offset

    def read_new(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        if not chunk:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out: list[dict[str, Any]] = []
        for raw in chunk[: end + 1].splitlines():
            if raw.strip():
                try:
                    out.append(json.loads(raw))
                except ValueError:  # never expected (writers repair a torn tail); skip rather than stall
                    continue
        return out


def latest_state_dir(output_dir: Path) -> Path | None:
    """The newest complete state under ``output_dir``, or None (pure Python: the worker calls it)."""
    root = output_dir / STATE_DIR
    if not root.is_dir():
        return None
    complete = []
    for entry in root.iterdir():
        if entry.name.startswith("step-") and (entry / PROGRESS_FILE).is_file() and (entry / TENSORS_FILE).is_file():
            try:
                complete.append((int(entry.name.removeprefix("step-")), entry))
            except ValueError:
                continue
    return max(complete)[1] if complete else None
