"""Scale-out on PostgreSQL: three ``openft worker`` processes share twenty queued jobs; one worker is
killed with SIGKILL while training, and every job still runs to success exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from scale_out_support import running_workers, wait_for
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.settings import Settings
from openft.store import open_store
from training_processes import training_pids

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"
N_JOBS = 20
N_WORKERS = 3
HEARTBEAT_TIMEOUT = 10


@pytest.fixture
def workers(settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    with running_workers(settings, N_WORKERS, heartbeat_timeout=HEARTBEAT_TIMEOUT) as procs:
        yield procs


@pytest.mark.timeout(2400)  # twenty training processes; minutes on a busy two-core machine
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_three_workers_run_twenty_jobs_exactly_once_despite_a_sigkill(
    settings: Settings, workers: list[subprocess.Popen[bytes]]
) -> None:
    settings.ensure_dirs()
    store = open_store(settings.sqlalchemy_url)
    with TestClient(create_app(settings, embedded_worker=False)) as http:
        client = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
        training_file = client.files.create(
            file=("tiny.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
        ).id
        # The first job trains longer, so the worker holding it can be killed mid-training.
        epochs = [4] + [1] * (N_JOBS - 1)
        jobs = [
            client.fine_tuning.jobs.create(
                model=TINY,
                training_file=training_file,
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": n, "batch_size": 4}}},
            ).id
            for n in epochs
        ]
        victim_job = jobs[0]

        def victim_is_training() -> str | None:
            for index, proc in enumerate(workers):  # a worker that died on its own fails the test now
                log = settings.home / f"worker-{index}.log"
                assert proc.poll() is None, f"worker {index} exited:\n{log.read_text(errors='replace')[-3000:]}"
            job = store.get_job(victim_job)
            events = store.list_events(victim_job, limit=100)[0]
            if job.status == "running" and job.worker_id and any(e.type == "metrics" for e in events):
                return job.worker_id
            return None

        victim_worker_id = wait_for(victim_is_training, 600, "the first job to be training")
        victim = next(p for p in workers if f"-{p.pid}-" in victim_worker_id)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        # The training process dies with its worker (PR_SET_PDEATHSIG), before any re-queue.
        wait_for(lambda: not training_pids(victim_job), 30, "the orphaned training process to die")

        def all_finished() -> bool:
            return all(store.get_job(j).status in ("succeeded", "failed", "cancelled") for j in jobs)

        wait_for(all_finished, 1800, "every job to finish")
        finals = {j: client.fine_tuning.jobs.retrieve(j) for j in jobs}
        assert {j: f.status for j, f in finals.items()} == dict.fromkeys(jobs, "succeeded"), {
            j: f.error for j, f in finals.items() if f.status != "succeeded"
        }
        survivors = {f"-{p.pid}-" for p in workers if p is not victim}
        for job_id in jobs:
            row = store.get_job(job_id)
            events = store.list_events(job_id, limit=1000)[0][::-1]
            messages = Counter(e.message for e in events)
            assert len({e.id for e in events}) == len(events)
            assert messages[f"New fine-tuned model created: {row.fine_tuned_model}"] == 1
            assert messages["The job has successfully completed"] == 1
            # The run that succeeded was a surviving worker's.
            assert row.worker_id is not None and any(tag in row.worker_id for tag in survivors)
            requeued = [i for i, e in enumerate(events) if "stopped responding" in e.message]
            # Steps of the attempt that succeeded: in order, each once, up to the last (3 per epoch).
            steps = [e.data["step"] for e in events[max(requeued, default=0) :] if e.type == "metrics"]
            n_epochs = finals[job_id].method.supervised.hyperparameters.n_epochs
            assert steps == sorted(set(steps)) and steps[-1] == n_epochs * 3
            if job_id == victim_job:
                assert row.attempts == 1 and len(requeued) == 1
            else:
                # Never interrupted: one start, and each step reported once.
                assert row.attempts == 0 and messages["Fine-tuning job started"] == 1
                assert steps == list(range(1, 4))
        # Nothing left behind in the queue, and no job beyond the twenty.
        listed = list(client.fine_tuning.jobs.list(limit=100))
        assert sorted(j.id for j in listed) == sorted(jobs) and {j.status for j in listed} == {"succeeded"}
