"""The Ray executor on a local Ray (2 CPUs): a job trained inside a Ray actor, with its files sent to
the actor and its adapter fetched back as they would be across machines, and a cancel that reaches
the training process inside the actor."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.jobs.executors.ray import RayExecutor, job_resources
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import open_store

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]
ASSETS = Path(__file__).parents[1] / "assets"
EXAMPLES = Path(__file__).parents[2] / "src/openft/examples"
TINY = "openft/tiny-chat"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def ray_settings(tmp_path: Path, models_dir: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    return Settings(
        home=home,
        database_url=f"sqlite:///{tmp_path / 'openft.db'}",
        worker_poll_seconds=0.05,
        executor="ray",
        training_threads=1,
    )


@pytest.fixture
def served(local_ray: None, ray_settings: Settings) -> Iterator[tuple[OpenAI, Worker]]:
    """The API in-process and one worker whose executor is Ray, copying files as if on another node."""
    app = create_app(ray_settings, embedded_worker=False)
    with TestClient(app) as http:
        store = open_store(ray_settings.sqlalchemy_url)
        worker = Worker(ray_settings, store, executor=RayExecutor(ray_settings, share_files=False))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        yield OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0), worker
        stop.set()
        thread.join(timeout=60)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _events(client: OpenAI, job_id: str) -> list[Any]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def test_resources_follow_the_settings(ray_settings: Settings) -> None:
    resources = job_resources(ray_settings, TINY)
    assert resources["num_cpus"] == 1 and resources["num_gpus"] == 0
    assert resources["memory"] >= 1024**3


def test_a_job_runs_in_a_ray_actor_and_a_cancel_reaches_it(
    served: tuple[OpenAI, Worker], ray_settings: Settings
) -> None:
    client, worker = served
    training_file = client.files.create(
        file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=training_file.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    )
    done = _wait_for(
        lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed", "cancelled") and j,
        300,
        "the ray job to finish",
    )
    assert done.status == "succeeded", done.error
    events = _events(client, job.id)
    messages = [e.message for e in events]
    metrics = [e for e in events if e.type == "metrics"]
    assert [m.data["step"] for m in metrics] == list(range(1, metrics[-1].data["total_steps"] + 1))
    assert messages.count(f"New fine-tuned model created: {done.fine_tuned_model}") == 1
    # Outputs came back from the actor's own directory into this machine's job directory.
    adapter = ray_settings.jobs_dir / job.id / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert [f for f in done.result_files] and client.files.content(done.result_files[0]).text.startswith("step,")
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints and all((ray_settings.jobs_dir / job.id / "checkpoints").iterdir())

    long_file = client.files.create(file=("p.jsonl", (EXAMPLES / "pirate.jsonl").read_bytes()), purpose="fine-tune")
    long_job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=long_file.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 25}}},
    )
    _wait_for(
        lambda: any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(long_job.id, limit=5)),
        300,
        "training in the actor to report metrics",
    )
    running = worker.running
    assert running is not None and running.job.id == long_job.id
    handle: Any = running.handle
    assert handle.poll() is None
    assert client.fine_tuning.jobs.cancel(long_job.id).status == "cancelled"
    _wait_for(lambda: worker.running is None, 60, "the worker to let go of the cancelled job")
    # The actor is gone (the worker killed it after stopping its training process).
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(handle.actor.poll.remote(), timeout=30)
    final = client.fine_tuning.jobs.retrieve(long_job.id)
    assert final.status == "cancelled" and final.fine_tuned_model is None
    assert "Fine-tuning job cancelled" in [e.message for e in _events(client, long_job.id)]


def test_two_ray_train_workers_train_one_job_data_parallel(local_ray: None, ray_settings: Settings) -> None:
    """TorchTrainer with two gloo workers: rank 0 reports, both ranks end with the same weights."""
    settings = ray_settings.model_copy(update={"ray_train_workers": 2})
    app = create_app(settings, embedded_worker=False)
    with TestClient(app) as http:
        client = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
        worker = Worker(settings, open_store(settings.sqlalchemy_url), executor=RayExecutor(settings))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            training_file = client.files.create(
                file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
            )
            job = client.fine_tuning.jobs.create(
                model=TINY,
                training_file=training_file.id,
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
            )
            done = _wait_for(
                lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                600,
                "the data-parallel job to finish",
            )
        finally:
            stop.set()
            thread.join(timeout=60)
    assert done.status == "succeeded", done.error
    # 12 examples over 2 ranks: 6 each, 2 per rank per step -> 3 steps, reported once, by rank 0.
    steps = [e.data["step"] for e in _events(client, job.id) if e.type == "metrics"]
    assert steps == [1, 2, 3]
    job_dir = settings.jobs_dir / job.id
    rank0 = (job_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    rank1 = (job_dir / "ddp" / "rank-1" / "adapter" / "adapter_model.safetensors").read_bytes()
    # Different shards, averaged gradients: the replicas' weights stay identical.
    assert rank0 == rank1
    shard0 = (job_dir / "ddp" / "rank-0" / "train.jsonl").read_bytes()
    shard1 = (job_dir / "ddp" / "rank-1" / "train.jsonl").read_bytes()
    assert shard0 != shard1 and len(shard0.splitlines()) == len(shard1.splitlines()) == 6
