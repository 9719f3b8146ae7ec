"""Crash recovery on the worker's side: what a new attempt of a job continues from, event lines
written once however often they are read, and recognising a worker that is gone.

* An attempt continues from the newest full-state checkpoint the job's earlier attempts left in
  its output directory (see ``training/checkpointing.py``); with none, it starts over, keeping only
  the events file (its lines were already turned into events).
* The events file is read from its start by every attempt. An event line becomes a job event with
  an id derived from the job and the line (its step for metrics and checkpoints, which a resumed
  run repeats with identical numbers; its content, which carries a timestamp, for everything
  else), so re-reading never duplicates an event.
* Validated input files are pinned (hard-linked) into the job's directory, so a file deleted while
  its job is queued, running or paused does not break a later attempt.
* A worker id is ``{host}-{pid}-{random}``: a job held by a worker of this host whose process no
  longer exists is taken back at once, instead of after the heartbeat timeout. That is what makes a
  restarted ``openft serve`` pick up its running jobs promptly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openft.jobs import status as st
from openft.store import Store
from openft.store.recovery import append_event_once, event_id_for
from openft.training.protocol import EVENTS_FILE, latest_state_dir

INPUTS_DIR = "inputs"
COPY_CHUNK_BYTES = 8 * 1024 * 1024
TRAINING = (st.RUNNING, st.PAUSED, st.QUEUED)
"""Where a job's training process may still be writing lines for the worker holding it (a pause, or a
pause and a resume, waits for the process to stop)."""
KEEP_ON_RESTART = frozenset({EVENTS_FILE, INPUTS_DIR})
"""What a fresh start keeps of an earlier attempt: the events file (its lines are events already) and
the job's pinned input files."""


def pin_input(output_dir: Path, file_id: str, source: Path, *, progress: Callable[[], None] | None = None) -> Path:
    """Keep the job's own link to an input file, so deleting the file later cannot break the job.

    A hard link shares the bytes without copying them; where linking is not possible the file is
    copied in chunks, calling ``progress`` before each (whatever it raises stops the copy).
    """
    target = output_dir / INPUTS_DIR / file_id
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{file_id}.part")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        _copy(source, partial, progress)
    os.replace(partial, target)
    return target


def _copy(source: Path, target: Path, progress: Callable[[], None] | None) -> None:
    try:
        with source.open("rb") as src, target.open("wb") as dst:
            while chunk := src.read(COPY_CHUNK_BYTES):
                if progress is not None:
                    progress()
                dst.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def pinned_input(output_dir: Path, file_id: str) -> Path | None:
    """The job's pinned copy of ``file_id``, if it has one."""
    path = output_dir / INPUTS_DIR / file_id
    return path if path.is_file() else None


def prepare_attempt(output_dir: Path) -> Path | None:
    """Ready ``output_dir`` for a new attempt; returns the full state to resume from, or None.

    With no complete state, everything but the events file is removed: the attempt starts over.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    state = latest_state_dir(output_dir)
    if state is not None:
        return state
    for entry in output_dir.iterdir():
        if entry.name in KEEP_ON_RESTART:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return None


def line_key(line: dict[str, Any]) -> str:
    """The identity of an event line: the same line, or the same step redone after a resume, gives the same key."""
    kind = line.get("kind")
    if kind in ("metrics", "checkpoint") and "step" in line:
        return f"{kind}:{line['step']}"
    return "line:" + hashlib.sha256(json.dumps(line, sort_keys=True).encode()).hexdigest()


class LineEvents:
    """Turns a job's event lines into job events, each at most once, while ``worker_id`` holds the job."""

    def __init__(self, store: Store, job_id: str, worker_id: str):
        self.store = store
        self.job_id = job_id
        self.worker_id = worker_id
        self.seen = store.event_ids(job_id)

    def is_new(self, line: dict[str, Any]) -> bool:
        return event_id_for(self.job_id, line_key(line)) not in self.seen

    def append(self, line: dict[str, Any], message: str, **fields: Any) -> bool:
        """Append the event for ``line`` (``fields``: level, type, data) unless it exists; whether it was new.

        Nothing is written once the worker no longer holds the job (taken over, or cancelled).
        """
        event_id = event_id_for(self.job_id, line_key(line))
        if event_id in self.seen:
            return False
        written = append_event_once(
            self.store, self.job_id, line_key(line), message, held_by=self.worker_id, statuses=TRAINING, **fields
        )
        if written:
            self.seen.add(event_id)
        return written


def worker_is_gone(worker_id: str) -> bool:
    """Whether ``worker_id`` names a worker process of this host that no longer runs.

    False when unsure (another host, an id of another shape, a live process): the heartbeat
    timeout then decides.
    """
    host = worker_id.rpartition("-")[0]  # drop the random part
    host, _, pid_text = host.rpartition("-")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        # Our own process: alive, unless the id is from an earlier process that had the same pid
        # (a container restarted) -- ids of live workers in this process are registered below.
        return worker_id not in _LIVE_WORKER_IDS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


_LIVE_WORKER_IDS: set[str] = set()


def register_live_worker(worker_id: str) -> None:
    """Mark ``worker_id`` as a worker of this process (see :func:`worker_is_gone`)."""
    _LIVE_WORKER_IDS.add(worker_id)
