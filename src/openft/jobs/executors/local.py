"""The local executor: the training process is a child of the worker, in its own process group.

A crash or OOM of the child becomes a failed job, not a dead worker; a cancel is one ``killpg``;
and ``PR_SET_PDEATHSIG`` kills the child if the worker dies, so no training runs without a
worker behind it (the job is then re-queued by the reaper).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from openft.store.rows import JobRow
from openft.training.events import EVENTS_FILE, EventReader

LOG_FILE = "train.log"


def die_with_parent() -> None:
    """In the child: a new session, and SIGKILL when the parent dies."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def training_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


def read_log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-1000:]


class LocalHandle:
    """A training process running on this machine."""

    def __init__(self, process: subprocess.Popen[bytes], output_dir: Path, log_file: IO[bytes]):
        self.process = process
        self.output_dir = output_dir
        self.reader = EventReader(output_dir / EVENTS_FILE)
        self._log_file = log_file
        self.description = f"pid {process.pid}"

    def poll(self) -> int | None:
        return self.process.poll()

    def read_events(self) -> list[dict[str, Any]]:
        return self.reader.read_new()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 3) -> str:
        return read_log_tail(self.output_dir / LOG_FILE, lines)

    def close(self) -> None:
        self.wait(timeout=1)
        self._log_file.close()


class LocalExecutor:
    """Runs ``python -m openft.training spec.json`` as a child process in ``output_dir``."""

    def launch(self, job: JobRow, spec_path: Path, output_dir: Path) -> LocalHandle:
        log_file = (output_dir / LOG_FILE).open("ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "openft.training", str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                env=training_env(),
                cwd=str(output_dir),
            )
        except BaseException:
            log_file.close()
            raise
        return LocalHandle(process, output_dir, log_file)

    def shutdown(self) -> None:
        return None
