"""Blob storage behind ``OPENFT_STORAGE_URL``: the API and a worker with different homes (as on two
machines) share uploaded files, adapters and results only through an fsspec URL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import open_store
from openft.store.blobs import BlobStore

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


def _home(path: Path, models_dir: Path) -> Path:
    path.mkdir()
    (path / "models").symlink_to(models_dir)
    return path


def test_memory_storage_round_trips_files_and_directories(tmp_path: Path) -> None:
    url = f"memory://openft-{tmp_path.name}"
    writer = BlobStore(Settings(home=tmp_path / "a", storage_url=url))
    reader = BlobStore(Settings(home=tmp_path / "b", storage_url=url))
    (tmp_path / "a/jobs/j1/adapter/sub").mkdir(parents=True)
    (tmp_path / "a/jobs/j1/adapter/config.json").write_text("{}")
    (tmp_path / "a/jobs/j1/adapter/sub/w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "a/files").mkdir()
    (tmp_path / "a/files/file-1").write_bytes(b"line\n")
    writer.publish("jobs/j1/adapter")
    writer.publish("files/file-1")
    assert reader.exists("jobs/j1/adapter") and not (tmp_path / "b/jobs").exists()
    adapter = reader.local_path("jobs/j1/adapter")
    assert adapter == tmp_path / "b/jobs/j1/adapter"
    assert (adapter / "config.json").read_text() == "{}" and (adapter / "sub/w.bin").read_bytes() == b"\x00\x01"
    assert reader.local_path("files/file-1").read_bytes() == b"line\n"
    reader.delete("files/file-1")
    assert not writer.exists("files/file-1")
    with pytest.raises(FileNotFoundError):
        reader.local_path("files/file-1")
    with pytest.raises(ValueError):
        reader.local_path("../outside")


def test_local_storage_is_the_home_directory(tmp_path: Path) -> None:
    blobs = BlobStore(Settings(home=tmp_path))
    (tmp_path / "files").mkdir()
    (tmp_path / "files/file-1").write_bytes(b"x")
    blobs.publish("files/file-1")  # nothing to copy
    assert blobs.is_local and blobs.local_path("files/file-1") == tmp_path / "files/file-1"


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_api_and_a_worker_on_another_home_share_only_the_storage_url(tmp_path: Path, models_dir: Path) -> None:
    storage = tmp_path / "bucket"
    storage.mkdir()
    common = {"database_url": f"sqlite:///{tmp_path / 'openft.db'}", "storage_url": storage.as_uri()}
    api_settings = Settings(home=_home(tmp_path / "api-home", models_dir), worker_poll_seconds=0.05, **common)
    worker_settings = Settings(
        home=_home(tmp_path / "worker-home", models_dir), worker_poll_seconds=0.05, training_threads=1, **common
    )
    with TestClient(create_app(api_settings, embedded_worker=False)) as http:
        client = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
        data = (ASSETS / "tiny_train.jsonl").read_bytes()
        uploaded = client.files.create(file=("tiny.jsonl", data), purpose="fine-tune")
        assert (storage / "files" / uploaded.id).read_bytes() == data
        # The API's own copy is only a cache: without it the content comes from the storage.
        (api_settings.home / "files" / uploaded.id).unlink()
        assert client.files.content(uploaded.id).content == data

        worker = Worker(worker_settings, open_store(worker_settings.sqlalchemy_url))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            job = client.fine_tuning.jobs.create(
                model="openft/tiny-chat",
                training_file=uploaded.id,
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
            )
            done = _wait_for(
                lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                300,
                "the job to finish",
            )
        finally:
            stop.set()
            thread.join(timeout=60)
        assert done.status == "succeeded", done.error
        # The worker fetched the training file into its own home and published what it produced.
        assert (worker_settings.home / "files" / uploaded.id).read_bytes() == data
        assert (storage / "jobs" / job.id / "adapter" / "adapter_config.json").is_file()
        checkpoint = next(iter(client.fine_tuning.jobs.checkpoints.list(job.id)))
        assert (storage / "jobs" / job.id / "checkpoints" / f"step-{checkpoint.step_number}").is_dir()
        assert not (api_settings.home / "jobs" / job.id).exists()
        # The results file was written by the worker and is read by the API from the storage.
        results = client.files.content(done.result_files[0]).text
        assert results.startswith("step,") and len(results.splitlines()) == 4
        # Serving on the API's machine fetches the adapter from the storage on first use.
        reply = client.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "Hello!"}], max_tokens=4
        )
        assert reply.model == done.fine_tuned_model and reply.choices[0].message.content is not None
        assert (api_settings.home / "jobs" / job.id / "adapter" / "adapter_config.json").is_file()
