"""Claims that hold while the work goes on, on PostgreSQL: ``openft serve --no-worker`` and three
``openft worker``s with a 2 s heartbeat timeout. A training file that takes several timeouts to
validate is validated once and its job goes on to run; a job cancelled mid-validation stays
cancelled, and no worker touches it again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from scale_out_support import running_workers, start_api, wait_for, worker_log

from chat_files import write_slow_chat_file
from openft.settings import Settings
from openft.store import open_store
from training_processes import training_pids

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
HEARTBEAT_TIMEOUT = 2.0
N_WORKERS = 3
VALIDATED = "Files validated, moving job to queued state"
CANCELLED = "Fine-tuning job cancelled"


@pytest.fixture
def client(settings: Settings) -> Iterator[OpenAI]:
    settings.ensure_dirs()
    server = start_api(settings)
    try:
        with running_workers(settings, N_WORKERS, heartbeat_timeout=HEARTBEAT_TIMEOUT):
            yield OpenAI(base_url=server.base_url, api_key="sk-local", max_retries=0, timeout=300)
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)


def _messages(client: OpenAI, job_id: str) -> list[str]:
    return [e.message for e in reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100)))]


def _validations(settings: Settings, job_id: str) -> list[str]:
    """The workers' log lines of each validation of ``job_id`` begun."""
    logs = "\n".join(worker_log(settings, i) for i in range(N_WORKERS))
    return [line for line in logs.splitlines() if f"job {job_id}: validating its files" in line]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_long_validations_keep_their_claim_and_cancelled_ones_stay_cancelled(
    settings: Settings, client: OpenAI, tmp_path: Path
) -> None:
    store = open_store(settings.sqlalchemy_url)
    path = tmp_path / "big.jsonl"
    write_slow_chat_file(path, 4 * HEARTBEAT_TIMEOUT)
    with path.open("rb") as f:
        training_file = client.files.create(file=("big.jsonl", f), purpose="fine-tune").id
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}
    kept = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file, method=method)
    dropped = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file, method=method)

    # Cancel the second job once a worker is validating it.
    wait_for(lambda: store.get_job(dropped.id).worker_id, 120, "a worker to claim the second job")
    client.fine_tuning.jobs.cancel(dropped.id)
    cancelled_events = _messages(client, dropped.id)
    assert cancelled_events[-1] == CANCELLED

    # The first one is validated once, however long that takes, and goes on to train.
    wait_for(lambda: client.fine_tuning.jobs.retrieve(kept.id).status == "running", 300, "the first job to run")
    messages = _messages(client, kept.id)
    assert messages.count(VALIDATED) == 1 and len(_validations(settings, kept.id)) == 1
    validated_at = next(e.created_at for e in client.fine_tuning.jobs.list_events(kept.id) if e.message == VALIDATED)
    took = validated_at - kept.created_at
    assert took >= 2 * HEARTBEAT_TIMEOUT, f"validation took {took}s: too quick to test heartbeats"
    # Training this file would take long: cancelling it also stops its training process.
    client.fine_tuning.jobs.cancel(kept.id)
    wait_for(lambda: not training_pids(kept.id), 60, "the cancelled job's training process to stop")

    # The cancelled one: begun once, stopped, and untouched for several heartbeat timeouts.
    assert len(_validations(settings, dropped.id)) == 1
    stopped = f"job {dropped.id}: validation stopped; the job is no longer this worker's"
    wait_for(lambda: any(stopped in worker_log(settings, i) for i in range(N_WORKERS)), 30, "its validation to stop")
    time.sleep(3 * HEARTBEAT_TIMEOUT)
    job = client.fine_tuning.jobs.retrieve(dropped.id)
    assert job.status == "cancelled" and _messages(client, dropped.id) == cancelled_events
    assert store.get_job(dropped.id).status == "cancelled" and len(_validations(settings, dropped.id)) == 1
    assert not (settings.jobs_dir / dropped.id / "inputs").exists()
