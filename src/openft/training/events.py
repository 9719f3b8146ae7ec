"""Writing event lines (the format is in ``training/protocol.py``) from inside a training process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from openft.training.protocol import EVENTS_FILE


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
