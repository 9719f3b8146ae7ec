"""A deployment's workers and a file that takes longer to validate than the heartbeat timeout: PostgreSQL,
``openft serve --no-worker`` and three ``openft worker`` processes with a heartbeat timeout of a few seconds,
driven by the official client. The file is validated once and the job reaches ``running``; a job cancelled
mid-validation ends ``cancelled`` and no worker touches it again."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import LiveServer, stop_live_server
from openai import OpenAI
from scale_out_support import running_workers, start_api, wait_for, worker_log

from chat_files import write_slow_chat_file
from openft.settings import Settings
from openft.store import open_store

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
TINY = "openft/tiny-chat"
N_WORKERS = 3
HEARTBEAT_TIMEOUT = 3.0
VALIDATED = "Files validated, moving job to queued state"


@pytest.fixture
def deployment(settings: Settings) -> Iterator[tuple[LiveServer, list[subprocess.Popen[bytes]]]]:
    settings.ensure_dirs()
    api = start_api(settings)
    try:
        with running_workers(settings, N_WORKERS, heartbeat_timeout=HEARTBEAT_TIMEOUT) as workers:
            yield api, workers
    finally:
        stop_live_server(api)


def _big_file(client: OpenAI, tmp_path: Path) -> str:
    path = tmp_path / "big.jsonl"
    write_slow_chat_file(path, 4 * HEARTBEAT_TIMEOUT)  # several heartbeat timeouts, as this machine runs now
    with path.open("rb") as f:
        return client.files.create(file=("big.jsonl", f), purpose="fine-tune").id


def _messages(client: OpenAI, job_id: str) -> list[str]:
    return [e.message for e in reversed(client.fine_tuning.jobs.list_events(job_id, limit=100).data)]


def _all_alive(settings: Settings, workers: list[subprocess.Popen[bytes]]) -> None:
    for index, proc in enumerate(workers):
        assert proc.poll() is None, f"worker {index} exited:\n{worker_log(settings, index)[-3000:]}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_workers_validate_a_long_file_once_and_leave_a_cancelled_job_alone(
    settings: Settings, deployment: tuple[LiveServer, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    api, workers = deployment
    client = api.client()
    store = open_store(settings.sqlalchemy_url)
    training_file = _big_file(client, tmp_path)

    # One job: validated once however long it takes, then it trains.
    job = client.fine_tuning.jobs.create(model=TINY, training_file=training_file).id
    started = time.time()

    def running() -> bool:
        _all_alive(settings, workers)
        return client.fine_tuning.jobs.retrieve(job).status == "running"

    wait_for(running, 600, "the job to reach running")
    validating_took = time.time() - started
    client.fine_tuning.jobs.cancel(job)
    messages = _messages(client, job)
    assert messages.count(VALIDATED) == 1, messages
    assert not any("stopped responding" in m for m in messages), messages
    assert validating_took > 2 * HEARTBEAT_TIMEOUT, f"{validating_took:.1f}s: too quick to test heartbeats"

    # Another: cancelled while a worker validates it, then left alone by all three.
    second = client.fine_tuning.jobs.create(model=TINY, training_file=training_file).id
    wait_for(lambda: store.get_job(second).worker_id is not None, 120, "the second job to be claimed")
    assert client.fine_tuning.jobs.retrieve(second).status == "validating_files"
    cancelled = client.fine_tuning.jobs.cancel(second)
    assert cancelled.status == "cancelled"
    at_cancel = store.get_job(second)
    time.sleep(4 * HEARTBEAT_TIMEOUT)  # long enough for a validation to finish and for a reaper to look
    _all_alive(settings, workers)
    assert store.get_job(second) == at_cancel  # not a field written since: no heartbeat, no status
    messages = _messages(client, second)
    assert messages[-1] == "Fine-tuning job cancelled" and VALIDATED not in messages, messages
    assert not (settings.jobs_dir / second / "inputs").exists()
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job).status == "cancelled", 60, "the first job to stop")
