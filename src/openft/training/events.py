"""The event-line protocol between a training process and the worker that runs it.

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
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
"""Where a training process's stdout and stderr go, in its job's output directory."""


class EventWriter:
    """Appends event lines for the worker; safe to use from a recipe without any database."""

    def __init__(self, output_dir: Path):
        output_dir.mkdir(parents=True, exist_ok=True)
        _drop_partial_last_line(output_dir / EVENTS_FILE)
        self._fh: IO[str] = (output_dir / EVENTS_FILE).open("a", encoding="utf-8")
        self.tracking: Any = None
        """A ``training.tracking.Tracking`` that also receives every metrics line, when set."""

    def _write(self, kind: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"kind": kind, "time": time.time(), **payload}, allow_nan=False)
        self._fh.write(line + "\n")
        self._fh.flush()

    def message(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        self._write("message", {"level": level, "message": message, "data": data or {}})

    def metrics(self, **metrics: Any) -> None:
        self._write("metrics", metrics)
        if self.tracking is not None:
            self.tracking.log(metrics)

    def checkpoint(self, step: int, path: str, metrics: dict[str, Any]) -> None:
        self._write("checkpoint", {"step": step, "path": path, "metrics": metrics})

    def checkpoint_deleted(self, step: int) -> None:
        self._write("checkpoint_deleted", {"step": step})

    def result(self, **result: Any) -> None:
        self._write("result", result)

    def error(self, code: str, message: str, param: str | None = None) -> None:
        self._write("error", {"code": code, "message": message, "param": param})

    def stopped(self, step: int) -> None:
        self._write("stopped", {"step": step})

    def close(self) -> None:
        if self.tracking is not None:
            self.tracking.finish()
        self._fh.close()


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


def _drop_partial_last_line(path: Path) -> None:
    """Cut a line torn by a killed writer, so a resumed run appends whole lines after whole lines.

    Readers consume only up to the last newline, so nothing cut here was ever read.
    """
    if not path.exists():
        return
    with path.open("rb+") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        keep = size
        while keep > 0:
            step = min(65536, keep)
            fh.seek(keep - step)
            block = fh.read(step)
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = keep - step + newline + 1
                break
            keep -= step
        fh.truncate(keep)
