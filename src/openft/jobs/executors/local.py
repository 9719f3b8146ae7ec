"""The local executor: the training process is a child of the worker, in its own process group.

A crash or OOM of the child becomes a failed job, not a dead worker; a cancel is one ``killpg``;
and ``PR_SET_PDEATHSIG`` kills the child if the worker dies, so no training runs without a
worker behind it (the job is then re-queued by the reaper).

Start-up: importing torch, transformers and PEFT takes seconds, longer than loading a cached
model. So while the worker is idle, the executor keeps one standby training process
(``python -m openft.training --standby``) that has done those imports and waits for a spec path on
stdin; a launch hands it the job, and a new standby is started at the next idle moment, never while
a job trains next to it. It is still one fresh process per job (isolation, memory returned at exit).
``standby=False`` (``OPENFT_STANDBY_TRAINING_PROCESS=false``) starts every job from scratch.
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
from openft.training.protocol import EVENTS_FILE, LOG_FILE, EventReader


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

    def __init__(self, *, standby: bool = True):
        self.use_standby = standby
        self._standby: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        """Have a standby training process ready (called by an idle worker; cheap once it is)."""
        if not self.use_standby or (self._standby is not None and self._standby.poll() is None):
            return
        self._standby = subprocess.Popen(
            [sys.executable, "-m", "openft.training", "--standby"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # until it has a job: then train.log (see training/__main__.py)
            preexec_fn=die_with_parent,
            env=training_env(),
        )

    def launch(self, job: JobRow, spec_path: Path, output_dir: Path) -> LocalHandle:
        log_file = (output_dir / LOG_FILE).open("ab")
        try:
            process = self._hand_to_standby(spec_path) or subprocess.Popen(
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

    def _hand_to_standby(self, spec_path: Path) -> subprocess.Popen[bytes] | None:
        process, self._standby = self._standby, None
        if process is None or process.stdin is None or process.poll() is not None:
            return None
        try:
            process.stdin.write(f"{spec_path.resolve()}\n".encode())
            process.stdin.close()
        except OSError:  # it died since the poll: start this job from scratch
            process.kill()
            process.wait()
            return None
        return process

    def shutdown(self) -> None:
        process, self._standby = self._standby, None
        if process is not None:  # it holds no job: nothing to save
            process.kill()
            process.wait()
