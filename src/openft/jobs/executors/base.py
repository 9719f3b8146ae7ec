"""The executor seam: launch a training process for a job, then poll, signal and read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from openft.store.rows import JobRow


class Handle(Protocol):
    """One launched training process, wherever it runs."""

    description: str
    """For logs: ``pid 1234`` or ``ray actor abc...``."""

    def poll(self) -> int | None:
        """The exit code once the process ended, else None."""

    def read_events(self) -> list[dict[str, Any]]:
        """Event lines (see :mod:`openft.training.events`) written since the last call, in order."""

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM to its process group); idempotent."""

    def kill(self) -> None:
        """Stop the process now (SIGKILL to its process group); idempotent."""

    def wait(self, timeout: float) -> int | None:
        """Block up to ``timeout`` seconds for the exit; the exit code or None."""

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the process's stdout/stderr, joined on one line (for error messages)."""

    def close(self) -> None:
        """Release what the handle holds (log files, actors); call once the process ended."""


class Executor(Protocol):
    """Starts training processes. ``output_dir`` holds ``spec_path`` and receives what training writes."""

    def launch(self, job: JobRow, spec_path: Path, output_dir: Path) -> Handle: ...

    def prepare(self) -> None:
        """Get ready for the next launch while the worker is idle (cheap when already ready)."""

    def shutdown(self) -> None:
        """Release the executor's own resources (a Ray connection); running handles are not touched."""
