"""Faults against a live ``openft serve`` training openft/tiny-chat, driven by the official client:
pause/resume (the job's files deleted while it is paused), SIGKILL of the training process (five
times), SIGKILL of the server and a restart (once, then under five jobs in a row), a burst of
concurrent requests during training, an upload cut off midway, and a diverging learning rate.

Every interrupted job must end with exactly the losses of the same job never interrupted (same seed),
each step reported once."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_support import (
    ASSETS,
    ServerProcess,
    job_losses,
    training_pid,
    wait_job,
    wait_job_step,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]
TINY = "openft/tiny-chat"
TOTAL_STEPS = 24  # 2 epochs of the 12 examples in tiny_train.jsonl, batch size 1
SEED = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ServerProcess]:
    env = {
        "OPENFT_SAVE_STATE_EVERY_STEPS": "3",
        "OPENFT_HEARTBEAT_TIMEOUT_SECONDS": "5",
        "OPENFT_MAX_JOB_ATTEMPTS": "5",
        "OPENFT_MAX_ACTIVE_JOBS_PER_ORGANIZATION": "100",
    }
    live = ServerProcess(tmp_path_factory.mktemp("faults-home"), models_dir, env)
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def files(server: ServerProcess) -> dict[str, str]:
    client = server.client()
    return {name: _upload(client, name) for name in ("tiny_train", "tiny_valid")}


def _upload(client: Any, name: str) -> str:
    content = (ASSETS / f"{name}.jsonl").read_bytes()
    return str(client.files.create(file=(f"{name}.jsonl", content), purpose="fine-tune").id)


def _events(client: Any, job_id: str) -> list[Any]:
    return list(client.fine_tuning.jobs.list_events(job_id, limit=100))


def create_job(server: ServerProcess, files: dict[str, str], **hyper: Any) -> str:
    job = server.client().fine_tuning.jobs.create(
        model=TINY,
        training_file=files["tiny_train"],
        validation_file=files["tiny_valid"],
        seed=SEED,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 1, **hyper}},
        },
    )
    return job.id


@pytest.fixture(scope="module")
def reference(server: ServerProcess, files: dict[str, str]) -> dict[int, float]:
    """The losses of the job never interrupted."""
    client = server.client()
    job = wait_job(client, create_job(server, files), ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    losses = job_losses(client, job.id)
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1))
    return losses


def test_pause_then_resume_ends_with_the_uninterrupted_metrics(
    server: ServerProcess, files: dict[str, str], reference: dict[int, float]
) -> None:
    client = server.client()
    own = {name: _upload(client, name) for name in files}  # deleted below: the job must not need them
    job_id = create_job(server, own)
    wait_job_step(client, job_id, 4)
    paused = client.fine_tuning.jobs.pause(job_id)
    assert paused.status == "paused"
    # The training process saves a checkpoint at the end of its step, stops, and the worker lets go.
    deadline = time.time() + 180
    while not any(e.message.startswith("Training stopped at step") for e in _events(client, job_id)):
        assert time.time() < deadline, "the paused job's training did not stop"
        time.sleep(0.2)
    assert training_pid(job_id) is None
    assert client.fine_tuning.jobs.retrieve(job_id).status == "paused"
    stopped_at = max(job_losses(client, job_id))
    checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id)]
    assert stopped_at in checkpoints, "a pause leaves a checkpoint at the step it stopped"

    with pytest.raises(Exception, match="only queued or running jobs can be paused"):
        client.fine_tuning.jobs.pause(job_id)
    for file_id in own.values():
        assert client.files.delete(file_id).deleted
    resumed = client.fine_tuning.jobs.resume(job_id)
    assert resumed.status == "queued"
    job = wait_job(client, job_id, ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    assert job_losses(client, job_id) == reference
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=200)]
    assert any(m.startswith(f"Resumed from step {stopped_at}/") for m in messages)
    with pytest.raises(Exception, match="only paused jobs can be resumed"):
        client.fine_tuning.jobs.resume(job_id)


def test_a_queued_job_pauses_at_once_and_cancels_exactly_once(server: ServerProcess, files: dict[str, str]) -> None:
    client = server.client()
    busy = create_job(server, files)  # keeps the worker busy, so the next job stays queued
    waiting = create_job(server, files)
    wait_job(client, waiting, ("queued",))
    assert client.fine_tuning.jobs.pause(waiting).status == "paused"
    assert client.fine_tuning.jobs.cancel(waiting).status == "cancelled"
    with pytest.raises(Exception, match="cannot be cancelled"):
        client.fine_tuning.jobs.cancel(waiting)
    with pytest.raises(Exception, match="only paused jobs can be resumed"):
        client.fine_tuning.jobs.resume(waiting)
    cancelled = [e for e in client.fine_tuning.jobs.list_events(waiting) if e.message == "Fine-tuning job cancelled"]
    assert len(cancelled) == 1
    # A running job that is paused and then cancelled ends cancelled, its process gone.
    wait_job_step(client, busy, 2)
    client.fine_tuning.jobs.pause(busy)
    assert client.fine_tuning.jobs.cancel(busy).status == "cancelled"
    deadline = time.time() + 60
    while training_pid(busy) is not None:
        assert time.time() < deadline, "the cancelled job's training process is still alive"
        time.sleep(0.2)
    assert client.fine_tuning.jobs.retrieve(busy).status == "cancelled"


def test_sigkill_of_the_training_process_five_times(
    server: ServerProcess, files: dict[str, str], reference: dict[int, float]
) -> None:
    client = server.client()
    jobs = [create_job(server, files) for _ in range(5)]
    rng = random.Random()
    for job_id in jobs:
        kill_at = rng.randint(4, TOTAL_STEPS - 2)  # from step 4 on, the state of step 3 exists
        wait_job_step(client, job_id, kill_at)
        pid = training_pid(job_id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    for job_id in jobs:
        job = wait_job(client, job_id, ("succeeded", "failed", "cancelled"))
        assert job.status == "succeeded", job.error
        assert job_losses(client, job_id) == reference
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=200)]
        assert any("The training process was killed (SIGKILL" in m for m in messages)
        assert any(m.startswith("Resumed from step") for m in messages)


def test_sigkill_of_the_server_then_restart(
    server: ServerProcess, files: dict[str, str], reference: dict[int, float]
) -> None:
    client = server.client()
    job_id = create_job(server, files)
    queued_behind = create_job(server, files)
    wait_job_step(client, job_id, 5)
    _kill_server(server, job_id)
    server.start()
    client = server.client()
    for each in (job_id, queued_behind):
        job = wait_job(client, each, ("succeeded", "failed", "cancelled"))
        assert job.status == "succeeded", job.error
        assert job_losses(client, each) == reference
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=200)]
    assert any("stopped responding; the job was re-queued" in m for m in messages)


def test_sigkill_of_the_worker_at_a_random_step_five_times(
    server: ServerProcess, files: dict[str, str], reference: dict[int, float]
) -> None:
    """The embedded worker (the whole ``openft serve``) is killed under each of five jobs, then started again."""
    client = server.client()
    jobs = [create_job(server, files) for _ in range(5)]
    rng = random.Random()
    for job_id in jobs:  # one job trains at a time: each kill lands under the job it waited for
        wait_job_step(client, job_id, rng.randint(4, TOTAL_STEPS - 2))
        _kill_server(server, job_id)
        server.start()
        client = server.client()
    for job_id in jobs:
        job = wait_job(client, job_id, ("succeeded", "failed", "cancelled"))
        assert job.status == "succeeded", job.error
        assert job_losses(client, job_id) == reference
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=200)]
        assert any("stopped responding; the job was re-queued" in m for m in messages)
        assert any(m.startswith("Resumed from step") for m in messages)


def _kill_server(server: ServerProcess, job_id: str) -> None:
    """SIGKILL the server and wait for the job's training process to die with it."""
    server.kill()
    deadline = time.time() + 30
    while training_pid(job_id) is not None:
        assert time.time() < deadline, "the training process outlived its server"
        time.sleep(0.1)


def test_concurrent_creations_and_reads_during_training(server: ServerProcess, files: dict[str, str]) -> None:
    client = server.client()
    # Long enough to still be training when the burst ends, however fast this machine trains (then cancelled).
    training = create_job(server, files, n_epochs=25)
    wait_job_step(client, training, 1)
    base = server.base_url
    headers = {"Authorization": "Bearer sk-local"}
    body = {
        "model": TINY,
        "training_file": files["tiny_train"],
        "seed": SEED,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
    }

    with httpx.Client(timeout=300, headers=headers) as http, ThreadPoolExecutor(max_workers=64) as pool:
        creations = [pool.submit(http.post, f"{base}/fine_tuning/jobs", json=body) for _ in range(50)]
        reads = [
            pool.submit(
                http.get,
                [
                    f"{base}/fine_tuning/jobs/{training}",
                    f"{base}/fine_tuning/jobs/{training}/events?limit=50",
                    f"{base}/fine_tuning/jobs?limit=20",
                    f"{base}/files",
                ][i % 4],
            )
            for i in range(200)
        ]
        responses = [f.result() for f in creations + reads]
        created = [r.json()["id"] for r in responses[:50] if r.status_code == 200]
        cancels = [pool.submit(http.post, f"{base}/fine_tuning/jobs/{job_id}/cancel") for job_id in created]
        responses += [f.result() for f in cancels]
    failures = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert not failures, failures[:5]
    assert len(created) == 50
    assert "database is locked" not in server.log()
    assert client.fine_tuning.jobs.cancel(training).status == "cancelled"  # it trained through the burst


def test_a_diverging_learning_rate_fails_with_nan_loss(server: ServerProcess, files: dict[str, str]) -> None:
    client = server.client()
    job = wait_job(client, create_job(server, files, learning_rate_multiplier=1e30), ("succeeded", "failed"))
    assert job.status == "failed"
    assert job.error.code == "nan_loss"
    assert "learning_rate_multiplier" in job.error.message and "diverged" in job.error.message


def test_an_upload_cut_off_midway_leaves_nothing(server: ServerProcess) -> None:
    import socket

    client = server.client()
    before = {f.id for f in client.files.list()}
    blobs_before = sorted(p.name for p in (server.home / "files").iterdir())
    boundary = "cutcutcut"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    sent = line * (1024 * 1024 // len(line))
    announced = len(head) + 8 * 1024 * 1024
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer sk-local\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {announced}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request + head + sent)  # an eighth of the body, then the connection drops
    time.sleep(2)
    assert {f.id for f in client.files.list()} == before
    assert sorted(p.name for p in (server.home / "files").iterdir()) == blobs_before
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
