"""For unit tests of the job lifecycle on the in-memory store: organizations, a valid training file's
lines, and a scripted executor in place of training processes (the layer below the worker)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openft.store.rows import JobRow
from openft.tenancy import Principal

ORG = Principal("org-a", "proj-a")
OTHER_ORG = Principal("org-b", "proj-b")


def chat_lines(count: int) -> bytes:
    """``count`` valid chat examples for tiny-chat, one JSON object a line."""
    example = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
    return b"".join(json.dumps(example).encode() + b"\n" for _ in range(count))


@dataclass
class ScriptedHandle:
    """A training process that has written ``lines`` (read all at once) and then exits with ``code``, or, with
    ``running``, keeps running until it is signalled and then exits with ``exit_when_stopped``."""

    lines: list[dict[str, Any]]
    code: int = 0
    running: bool = False
    exit_when_stopped: int = -15
    description: str = "scripted"
    signals: list[str] = field(default_factory=list)
    closed: bool = False

    def poll(self) -> int | None:
        if self.signals:
            return self.exit_when_stopped
        return None if self.running or self.lines else self.code

    def read_events(self) -> list[dict[str, Any]]:
        lines, self.lines = self.lines, []
        return lines

    def terminate(self) -> None:
        self.signals.append("TERM")

    def kill(self) -> None:
        self.signals.append("KILL")
        self.exit_when_stopped = -9

    def wait(self, timeout: float) -> int | None:
        return self.poll()

    def log_tail(self, lines: int = 3) -> str:
        return "scripted output"

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedExecutor:
    """Launches the next scripted handle; records each launch's job, spec and output directory."""

    handles: list[ScriptedHandle] = field(default_factory=list)
    launched: list[tuple[JobRow, dict[str, Any], Path]] = field(default_factory=list)

    def launch(self, job: JobRow, spec_path: Path, output_dir: Path) -> ScriptedHandle:
        self.launched.append((job, json.loads(spec_path.read_text()), output_dir))
        (output_dir / "results.csv").write_text("step,train_loss\n1,0.5\n")
        return self.handles.pop(0)

    def prepare(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
