"""Recovery bookkeeping on real databases: event lines become events once however often they are
read, checkpoints are recorded once, and jobs held by a dead worker of this host are taken back at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from job_rows import job_row
from openft.jobs import status as st
from openft.jobs.recovery import LineEvents, prepare_attempt, worker_is_gone
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import Store, open_store
from openft.store.recovery import add_checkpoint_once
from openft.store.rows import CheckpointRow, JobRow

pytestmark = pytest.mark.integration


@pytest.fixture
def store(settings: Settings) -> Store:
    settings.ensure_dirs()
    return open_store(settings.sqlalchemy_url)


def _job(job_id: str, status: str = st.RUNNING, **extra: object) -> JobRow:
    return job_row(job_id, status, **extra)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_event_lines_become_events_once_across_attempts(store: Store) -> None:
    store.insert_job(_job("ftjob-lines0001", worker_id="w1"))
    lines = [
        {"kind": "message", "time": 1.5, "level": "info", "message": "Loaded model", "data": {}},
        {"kind": "metrics", "time": 2.5, "step": 1, "train_loss": 2.0},
    ]
    first = LineEvents(store, "ftjob-lines0001", "w1")
    assert [first.append(line, str(line["kind"])) for line in lines] == [True, True]
    assert [first.append(line, str(line["kind"])) for line in lines] == [False, False]
    # A new attempt reads the file again from its start, and redoes step 1 (a new timestamp).
    second = LineEvents(store, "ftjob-lines0001", "w1")
    redone = {**lines[1], "time": 9.5}
    assert [second.append(line, str(line["kind"])) for line in [*lines, redone]] == [False, False, False]
    assert second.append({**lines[0], "time": 9.0}, "Loaded model") is True  # the new attempt's own message
    assert store.count_events("ftjob-lines0001") == 3


def test_a_checkpoint_is_recorded_once(store: Store) -> None:
    store.insert_job(_job("ftjob-ckpt00001", worker_id="w1"))

    def row(n: int) -> CheckpointRow:
        return CheckpointRow(
            id=f"ftckpt-{n}",
            job_id="ftjob-ckpt00001",
            organization_id="org-personal",
            created_at=0,
            step_number=12,
            fine_tuned_model_checkpoint="ft:x:ckpt-step-12",
            metrics={},
            adapter_path="jobs/x",
        )

    assert add_checkpoint_once(store, row(1), held_by="w1", statuses=[st.RUNNING]) is True
    assert add_checkpoint_once(store, row(2), held_by="w1", statuses=[st.RUNNING]) is False
    assert [c.id for c in store.list_checkpoints("ftjob-ckpt00001")[0]] == ["ftckpt-1"]


def test_jobs_of_a_dead_local_worker_are_taken_back_at_once(store: Store, settings: Settings) -> None:
    dead = f"{socket.gethostname()}-{_dead_pid()}-deadbeef"
    alive = f"{socket.gethostname()}-{os.getppid()}-cafecafe"
    fresh = time.time()  # a live heartbeat: only the dead process gives the jobs away
    store.insert_job(_job("ftjob-deadrun01", st.RUNNING, worker_id=dead, heartbeat_at=fresh))
    store.insert_job(_job("ftjob-deadpau01", st.PAUSED, worker_id=dead, heartbeat_at=fresh))
    store.insert_job(_job("ftjob-liverun01", st.RUNNING, worker_id=alive, heartbeat_at=fresh))
    assert worker_is_gone(dead) and not worker_is_gone(alive) and not worker_is_gone("elsewhere-1-abc")
    Worker(settings, store).reap_stale_jobs(time.time())
    requeued = store.get_job("ftjob-deadrun01")
    assert (requeued.status, requeued.worker_id, requeued.attempts) == (st.QUEUED, None, 1)
    paused = store.get_job("ftjob-deadpau01")
    assert (paused.status, paused.worker_id) == (st.PAUSED, None)
    assert store.get_job("ftjob-liverun01").worker_id == alive


def test_a_fresh_attempt_keeps_only_the_events_file(tmp_path: Path) -> None:
    (tmp_path / "checkpoints/step-3").mkdir(parents=True)
    (tmp_path / "events.jsonl").write_text('{"kind": "message"}\n')
    (tmp_path / "state/.partial-step-4").mkdir(parents=True)  # a save cut short is not a state
    assert prepare_attempt(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]
