"""A worker's claim holds while it validates a big file, and is lost for good when the job is cancelled:
real workers (in threads), real SQLite and PostgreSQL, jobs created through the official client."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from openai import OpenAI

from chat_files import write_slow_chat_file
from openft.jobs import status as st
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import Store, open_store

pytestmark = pytest.mark.integration
HEARTBEAT_TIMEOUT = 2.0
POLL_SECONDS = 0.25  # how often an idle worker looks for work by default
VALIDATED = "Files validated, moving job to queued state"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT, "standby_training_process": False}
    )


@pytest.fixture
def big_job(client: OpenAI, tmp_path: Path) -> str:
    """A job whose training file takes several heartbeat timeouts to validate."""
    path = tmp_path / "big.jsonl"
    write_slow_chat_file(path, 4 * HEARTBEAT_TIMEOUT)
    with path.open("rb") as f:
        training_file = client.files.create(file=("big.jsonl", f), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file).id


def _messages(store: Store, job_id: str) -> list[str]:
    return [e.message for e in reversed(store.list_events(job_id, limit=100)[0])]


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.time() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(POLL_SECONDS)


def test_a_long_validation_keeps_its_claim_and_runs_once(settings: Settings, big_job: str) -> None:
    store = open_store(settings.sqlalchemy_url)
    workers = [Worker(settings, open_store(settings.sqlalchemy_url)) for _ in range(3)]
    claims: list[str] = []
    stop = threading.Event()

    def work(worker: Worker) -> None:
        while not stop.is_set():
            if worker.validate_next_job():
                claims.append(worker.worker_id)  # each claim starts a validation
            else:
                stop.wait(POLL_SECONDS)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    started = time.time()
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: store.get_job(big_job).status != st.VALIDATING, 120, "the job to leave validating_files")
    finally:
        stop.set()
        for t in threads:
            t.join()
    took = time.time() - started
    assert took > 2 * HEARTBEAT_TIMEOUT, f"validation took {took:.1f}s: too quick to test heartbeats"
    job = store.get_job(big_job)
    assert (job.status, job.worker_id) == (st.QUEUED, None)
    assert len(claims) == 1 and _messages(store, big_job).count(VALIDATED) == 1


def test_a_job_cancelled_mid_validation_is_dropped_and_left_alone(
    settings: Settings, client: OpenAI, big_job: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(settings.sqlalchemy_url)
    worker = Worker(settings, open_store(settings.sqlalchemy_url))
    caplog.set_level(logging.INFO, logger="openft.jobs.worker")
    validating = threading.Thread(target=worker.validate_next_job)
    validating.start()
    _wait_for(lambda: store.get_job(big_job).worker_id is not None, 60, "the job to be claimed")
    client.fine_tuning.jobs.cancel(big_job)
    cancelled_at = time.time()
    validating.join(timeout=120)
    assert not validating.is_alive()
    stopped_after = time.time() - cancelled_at
    assert "validation stopped; the job is no longer this worker's" in caplog.text, stopped_after
    assert stopped_after < 4 * HEARTBEAT_TIMEOUT
    # Nothing more happens to it, whoever looks: no other claim, no event, no pinned input.
    other = Worker(settings, open_store(settings.sqlalchemy_url))
    assert not other.validate_next_job() and not worker.validate_next_job()
    time.sleep(2 * HEARTBEAT_TIMEOUT)
    other.reap_stale_jobs(time.time())
    job = store.get_job(big_job)
    assert job.status == st.CANCELLED
    messages = _messages(store, big_job)
    assert messages[-1] == "Fine-tuning job cancelled" and VALIDATED not in messages
    assert not (settings.jobs_dir / big_job / "inputs").exists()
