"""A live server on SQLite and PostgreSQL: a job that validated its training file before the file expired
still trains on it after the file answers 404 and its bytes are swept (the job pinned its own copy)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest
from e2e_support import start_live_server, stop_live_server
from openai import OpenAI
from scale_out_support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ASSETS = Path(__file__).parents[1] / "assets"
TINY = "openft/tiny-chat"
DATA = (ASSETS / "tiny_train.jsonl").read_bytes()


def _status_in(client: OpenAI, job_id: str, *statuses: str) -> Any:
    job = client.fine_tuning.jobs.retrieve(job_id)
    return job if job.status in statuses else None


def test_a_job_trains_on_its_pinned_copy_of_an_expired_file(
    tmp_path: Path, models_dir: Path, database_url: str
) -> None:
    (tmp_path / "models").symlink_to(models_dir)
    env = {
        "OPENFT_DATABASE_URL": database_url,
        "OPENFT_FILE_EXPIRES_AFTER_MIN_SECONDS": "1",
        "OPENFT_FILE_SWEEP_SECONDS": "0.5",
    }
    server = start_live_server(tmp_path, env=env)
    try:
        client = server.client()
        keep = client.files.create(file=("keep.jsonl", DATA), purpose="fine-tune").id
        # A long job holds the worker, so the next one is validated (and pins its file) but waits queued.
        busy = client.fine_tuning.jobs.create(model=TINY, training_file=keep, hyperparameters={"n_epochs": 50})
        wait_for(lambda: _status_in(client, busy.id, "running"), 240, "the first job to run")
        short = client.files.create(
            file=("short.jsonl", DATA), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 4}
        )
        job = client.fine_tuning.jobs.create(model=TINY, training_file=short.id, hyperparameters={"n_epochs": 1})
        wait_for(lambda: _status_in(client, job.id, "queued"), 30, "the second job to be validated")
        assert time.time() < short.expires_at, "validation took longer than the file lived"
        assert client.fine_tuning.jobs.pause(job.id).status == "paused"
        client.fine_tuning.jobs.cancel(busy.id)

        blob = tmp_path / "files" / short.id
        wait_for(lambda: not blob.exists(), 60, "the sweep to delete the expired file's bytes")
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(short.id)
        with pytest.raises(openai.NotFoundError):
            client.files.content(short.id)
        assert short.id not in {f.id for f in client.files.list()}
        assert (tmp_path / "jobs" / job.id / "inputs" / short.id).read_bytes() == DATA

        assert client.fine_tuning.jobs.resume(job.id).status == "queued"
        ended = ("succeeded", "failed", "cancelled")
        done = wait_for(lambda: _status_in(client, job.id, *ended), 240, "the job to end")
        assert done.status == "succeeded", done.error
        assert done.training_file == short.id and done.trained_tokens
    finally:
        stop_live_server(server)
