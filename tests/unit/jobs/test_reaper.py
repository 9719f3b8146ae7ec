"""The reaper on the in-memory store: jobs of silent or gone workers are taken back (re-queued, failed after
their attempts, or released), live workers keep theirs, and a worker never reaps the job it is training."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from job_rows import job_row
from openft.jobs import status as st
from openft.jobs.reaper import Reaper
from openft.settings import Settings
from openft.store import InMemoryStore

TIMEOUT = 30.0


def _reaper(settings: Settings, store: InMemoryStore) -> Reaper:
    return Reaper(settings.model_copy(update={"heartbeat_timeout_seconds": TIMEOUT}), store, "reaper-worker")


def _dead_local_worker_id() -> str:
    """The id a worker of this host would have had in a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return f"{socket.gethostname()}-{process.pid}-deadbeef"


def test_a_silent_workers_running_job_is_requeued_with_one_more_attempt(
    offline_settings: Settings, memory_store: InMemoryStore
) -> None:
    now = time.time()
    memory_store.insert_job(job_row("ftjob-1", st.RUNNING, worker_id="far-away-1-x", heartbeat_at=now - 2 * TIMEOUT))
    _reaper(offline_settings, memory_store).reap(now, training=None)
    job = memory_store.get_job("ftjob-1")
    assert (job.status, job.worker_id, job.attempts) == (st.QUEUED, None, 1)
    event = memory_store.list_events("ftjob-1")[0][0]
    assert event.level == "warn" and "stopped responding" in event.message and "attempt 2 of" in event.message


def test_a_running_job_fails_once_it_has_had_its_attempts(
    offline_settings: Settings, memory_store: InMemoryStore
) -> None:
    now = time.time()
    last = offline_settings.max_job_attempts - 1
    memory_store.insert_job(
        job_row("ftjob-1", st.RUNNING, worker_id="far-away-1-x", heartbeat_at=now - 2 * TIMEOUT, attempts=last)
    )
    _reaper(offline_settings, memory_store).reap(now, training=None)
    job = memory_store.get_job("ftjob-1")
    assert job.status == st.FAILED and job.error is not None and job.error["code"] == "worker_lost"


def test_jobs_that_do_not_run_are_only_released(offline_settings: Settings, memory_store: InMemoryStore) -> None:
    now = time.time()
    for job_id, status in (("ftjob-v", st.VALIDATING), ("ftjob-q", st.QUEUED), ("ftjob-p", st.PAUSED)):
        memory_store.insert_job(job_row(job_id, status, worker_id="far-away-1-x", heartbeat_at=now - 2 * TIMEOUT))
    _reaper(offline_settings, memory_store).reap(now, training=None)
    released = [memory_store.get_job(j) for j in ("ftjob-v", "ftjob-q", "ftjob-p")]
    assert [(j.status, j.worker_id, j.attempts) for j in released] == [
        (st.VALIDATING, None, 0),
        (st.QUEUED, None, 0),
        (st.PAUSED, None, 0),
    ]


def test_a_live_worker_keeps_its_job_and_a_gone_one_loses_it_at_once(
    offline_settings: Settings, memory_store: InMemoryStore
) -> None:
    now = time.time()
    memory_store.insert_job(job_row("ftjob-live", st.RUNNING, worker_id="far-away-1-x", heartbeat_at=now))
    memory_store.insert_job(job_row("ftjob-gone", st.RUNNING, worker_id=_dead_local_worker_id(), heartbeat_at=now))
    _reaper(offline_settings, memory_store).reap(now, training=None)
    assert memory_store.get_job("ftjob-live").worker_id == "far-away-1-x"
    assert memory_store.get_job("ftjob-gone").status == st.QUEUED


def test_a_worker_never_reaps_the_job_it_is_training(offline_settings: Settings, memory_store: InMemoryStore) -> None:
    now = time.time()
    memory_store.insert_job(job_row("ftjob-mine", st.RUNNING, worker_id="reaper-worker", heartbeat_at=now - 1000))
    memory_store.insert_job(job_row("ftjob-stuck", st.QUEUED, worker_id="reaper-worker", heartbeat_at=now))
    reaper = _reaper(offline_settings, memory_store)
    reaper.reap(now, training="ftjob-mine")
    assert memory_store.get_job("ftjob-mine").worker_id == "reaper-worker"
    # Held by this worker yet not worked on (a race lost while finishing): as good as gone.
    assert memory_store.get_job("ftjob-stuck").worker_id is None


def test_a_worker_that_heartbeats_before_the_take_back_commits_keeps_its_job(
    offline_settings: Settings, memory_store: InMemoryStore
) -> None:
    now = time.time()
    memory_store.insert_job(job_row("ftjob-1", st.RUNNING, worker_id="far-away-1-x", heartbeat_at=now - 2 * TIMEOUT))
    stale = memory_store.get_job("ftjob-1")
    assert memory_store.update_job("ftjob-1", expect_worker="far-away-1-x", heartbeat_at=now)  # it beats meanwhile
    _reaper(offline_settings, memory_store).take_back(stale, why="silent", stale_before=now - TIMEOUT)
    job = memory_store.get_job("ftjob-1")
    assert (job.status, job.worker_id, job.attempts) == (st.RUNNING, "far-away-1-x", 0)
