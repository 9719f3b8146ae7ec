"""Files with ``expires_after``, through the official client on SQLite and PostgreSQL: gone for every request
at ``expires_at`` (before any sweep), their bytes deleted by the sweep, several sweepers at once safe, the
accepted range, Uploads that make expiring files, and a job whose file expired before validation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from sqlalchemy import func, select
from starlette.testclient import TestClient

from openft import ids
from openft.api.app import create_app
from openft.files.expiry import GRACE_SECONDS, FileSweeper
from openft.jobs.worker import Worker
from openft.settings import Settings
from openft.store import Store
from openft.store import schema as s
from openft.store.rows import FileRow

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"
DATA = (ASSETS / "tiny_train.jsonl").read_bytes()


def _expiring(seconds: int) -> dict[str, object]:
    return {"anchor": "created_at", "seconds": seconds}


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()) + 0.05)


@pytest.fixture
def expiring(settings: Settings) -> Iterator[tuple[FastAPI, OpenAI]]:
    """The app with files allowed to expire after 2 s, and a sweep that (after its first) never runs by itself."""
    short = settings.model_copy(
        update={"file_expires_after_min_seconds": 2, "file_sweep_seconds": 3600, "standby_training_process": False}
    )
    app = create_app(short, embedded_worker=False)
    with TestClient(app) as http:
        yield app, OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)


def _file_rows(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(s.files.c.id)).scalars())


def test_a_file_is_gone_at_its_expiry_and_its_bytes_at_the_sweep(expiring: tuple[FastAPI, OpenAI]) -> None:
    app, client = expiring
    settings: Settings = app.state.settings
    keep = client.files.create(file=("keep.jsonl", DATA), purpose="fine-tune")
    short = client.files.create(file=("short.jsonl", DATA), purpose="fine-tune", expires_after=_expiring(2))
    assert keep.expires_at is None and short.expires_at == short.created_at + 2
    assert client.files.retrieve(short.id).expires_at == short.expires_at
    assert client.files.content(short.id).read() == DATA
    assert {f.id for f in client.files.list()} == {keep.id, short.id}

    _sleep_until(short.expires_at)
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as err:
            call(short.id)
        assert err.value.code == "file_not_found"
    assert [f.id for f in client.files.list()] == [keep.id]
    assert [f.id for f in client.files.list(purpose="fine-tune", order="asc")] == [keep.id]
    # Gone by the clock alone: the sweep has not run, the row and the bytes are still there.
    blob = settings.files_dir / short.id
    assert blob.exists() and short.id in _file_rows(app.state.store)

    sweeper = FileSweeper(settings, app.state.store)
    assert sweeper.sweep(now=short.expires_at + GRACE_SECONDS - 1) == 0  # bytes outlive the file a little
    assert sweeper.sweep(now=short.expires_at + GRACE_SECONDS) == 1
    assert not blob.exists() and short.id not in _file_rows(app.state.store)
    assert client.files.content(keep.id).read() == DATA


def test_the_accepted_range_of_expires_after(expiring: tuple[FastAPI, OpenAI]) -> None:
    _, client = expiring
    for seconds in (1, 2_592_001):
        with pytest.raises(openai.BadRequestError) as err:
            client.files.create(file=("f.jsonl", DATA), purpose="fine-tune", expires_after=_expiring(seconds))
        assert err.value.param == "expires_after[seconds]"
        assert f"must be between 2 and 2592000 (got {seconds})" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(
            bytes=len(DATA), filename="f.jsonl", mime_type="text/jsonl", purpose="fine-tune", expires_after=_expiring(1)
        )
    assert err.value.param == "expires_after.seconds" and "must be between 2 and 2592000" in err.value.message
    assert client.files.create(file=("f.jsonl", DATA), purpose="fine-tune", expires_after=_expiring(2_592_000))


def test_an_upload_makes_an_expiring_file(expiring: tuple[FastAPI, OpenAI]) -> None:
    _, client = expiring
    upload = client.uploads.create(
        bytes=len(DATA), filename="u.jsonl", mime_type="text/jsonl", purpose="fine-tune", expires_after=_expiring(2)
    )
    part = client.uploads.parts.create(upload.id, data=DATA)
    done = client.uploads.complete(upload.id, part_ids=[part.id])
    assert done.file is not None and done.file.expires_at == done.file.created_at + 2
    assert client.files.content(done.file.id).read() == DATA
    _sleep_until(done.file.expires_at)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(done.file.id)
    assert done.file.id not in {f.id for f in client.files.list()}


def test_a_file_that_expired_before_validation_fails_its_job(expiring: tuple[FastAPI, OpenAI]) -> None:
    app, client = expiring
    short = client.files.create(file=("short.jsonl", DATA), purpose="fine-tune", expires_after=_expiring(2))
    job = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=short.id)
    assert job.status == "validating_files"
    _sleep_until(short.expires_at)
    with pytest.raises(openai.BadRequestError) as err:  # no new job can name it
        client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=short.id)
    assert err.value.param == "training_file"

    Worker(app.state.settings, app.state.store).tick()
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "file_not_found" and failed.error.message == f"No such File object: {short.id}"


def test_several_sweepers_at_once_delete_each_file_once(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"file_sweep_seconds": 3600}), embedded_worker=False)
    store: Store = app.state.store
    now = int(time.time())
    expired, live = [], []
    for i in range(260):
        file_id = ids.new_file_id()
        blob = settings.files_dir / file_id
        blob.write_bytes(b"x")
        expires = now - 100 if i < 250 else (now + 3600 if i < 255 else None)
        store.insert_file(
            FileRow(
                id=file_id,
                organization_id="org-a",
                filename="f.jsonl",
                purpose="fine-tune",
                bytes=1,
                created_at=now - 200,
                blob_path=f"files/{file_id}",
                expires_at=expires,
            )
        )
        (expired if i < 250 else live).append(file_id)
    counts: list[int] = []
    sweepers = [FileSweeper(settings, store) for _ in range(3)]
    threads = [threading.Thread(target=lambda sw=sw: counts.append(sw.sweep())) for sw in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(counts) == 250  # each row deleted by exactly one sweeper
    assert _file_rows(store) == set(live)
    assert not any((settings.files_dir / f).exists() for f in expired)
    assert all((settings.files_dir / f).exists() for f in live)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.files)).scalar_one() == 10
