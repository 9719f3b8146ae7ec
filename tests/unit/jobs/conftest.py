"""Fixtures of the job lifecycle on the in-memory store: services, a worker and its reaper, with a scripted
executor in place of training processes, so each test runs in milliseconds."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from memory_lifecycle import ORG, ScriptedExecutor, chat_lines
from openft.files.service import FileService
from openft.jobs.service import JobService
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import InMemoryStore


@pytest.fixture
def memory_store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def offline_settings(tmp_path: Path, models_dir: Path) -> Settings:
    """Settings on a temporary home with the session's model cache; the database URL is never used (the store
    is in memory). No throughput calibration: the estimate a validated job gets counts tokens only."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    return Settings(
        home=home, standby_training_process=False, heartbeat_timeout_seconds=30, estimate_calibration_seconds=0
    )


@pytest.fixture
def files(offline_settings: Settings, memory_store: InMemoryStore) -> FileService:
    offline_settings.ensure_dirs()
    return FileService(offline_settings, memory_store)


@pytest.fixture
def jobs(memory_store: InMemoryStore, files: FileService) -> JobService:
    return JobService(memory_store, files)


@pytest.fixture
def training_file(files: FileService) -> str:
    """A valid training file of ``ORG``'s."""
    return files.create(ORG, filename="train.jsonl", purpose="fine-tune", content=io.BytesIO(chat_lines(12))).id


@pytest.fixture
def executor() -> ScriptedExecutor:
    return ScriptedExecutor()


@pytest.fixture
def worker(offline_settings: Settings, memory_store: InMemoryStore, executor: ScriptedExecutor) -> Worker:
    return Worker(offline_settings, memory_store, worker_id="unit-worker", executor=executor)
