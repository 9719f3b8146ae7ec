"""/v1/uploads through the official client: parts in any order assembled in the order given, byte count
and md5 checked, cancel and expiry delete the parts, and another organization cannot touch an Upload."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from sqlalchemy import update
from starlette.testclient import TestClient

from openft.store import schema

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


def _parts_dir(app: FastAPI, upload_id: str) -> Path:
    return app.state.settings.home / "uploads" / upload_id  # type: ignore[no-any-return]


def test_parts_complete_into_a_normal_file(client: OpenAI, app: FastAPI) -> None:
    data = (ASSETS / "tiny_train.jsonl").read_bytes()
    cut = len(data) // 3
    pieces = [data[:cut], data[cut : 2 * cut], data[2 * cut :]]
    upload = client.uploads.create(bytes=len(data), filename="train.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert upload.status == "pending" and upload.id.startswith("upload_") and upload.file is None
    assert upload.expires_at == upload.created_at + 3600
    # Sent out of order; the order of part_ids decides the bytes.
    parts = {i: client.uploads.parts.create(upload.id, data=pieces[i]) for i in (2, 0, 1)}
    assert all(p.object == "upload.part" and p.upload_id == upload.id for p in parts.values())
    done = client.uploads.complete(
        upload.id, part_ids=[parts[i].id for i in range(3)], md5=hashlib.md5(data).hexdigest()
    )
    assert done.status == "completed" and done.file is not None
    assert done.file.bytes == len(data) and done.file.filename == "train.jsonl" and done.file.purpose == "fine-tune"
    assert client.files.content(done.file.id).read() == data
    assert done.file.id in {f.id for f in client.files.list()}
    assert not _parts_dir(app, upload.id).exists()
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.parts.create(upload.id, data=b"more")
    assert err.value.code == "invalid_upload_state"
    # The file trains like any other.
    job = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=done.file.id)
    assert job.training_file == done.file.id


def test_sdk_chunked_upload(client: OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"messages": []}\n' * 2000)
    done = client.uploads.upload_file_chunked(file=path, mime_type="text/jsonl", purpose="fine-tune", part_size=7000)
    assert done.status == "completed" and done.file is not None
    assert client.files.content(done.file.id).read() == path.read_bytes()


def test_completion_checks_bytes_parts_and_md5(client: OpenAI) -> None:
    upload = client.uploads.create(bytes=10, filename="x.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    first = client.uploads.parts.create(upload.id, data=b'{"a": 1}\n')
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(upload.id, part_ids=[first.id])
    assert err.value.code == "upload_size_mismatch" and "9 bytes" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.parts.create(upload.id, data=b"12")  # 11 > 10
    assert err.value.code == "upload_too_large"
    second = client.uploads.parts.create(upload.id, data=b"\n")
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(upload.id, part_ids=[first.id, first.id])
    assert err.value.param == "part_ids"
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(upload.id, part_ids=[first.id, "part_nope"])
    assert err.value.code == "invalid_part"
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert err.value.code == "checksum_mismatch"
    assert client.uploads.complete(upload.id, part_ids=[first.id, second.id]).status == "completed"


def test_cancel_and_expiry_delete_parts(client: OpenAI, app: FastAPI) -> None:
    upload = client.uploads.create(bytes=4, filename="a.txt", mime_type="text/plain", purpose="user_data")
    client.uploads.parts.create(upload.id, data=b"ab")
    assert any(_parts_dir(app, upload.id).iterdir())
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled" and not _parts_dir(app, upload.id).exists()
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[])

    old = client.uploads.create(bytes=4, filename="b.txt", mime_type="text/plain", purpose="user_data")
    client.uploads.parts.create(old.id, data=b"ab")
    # An hour passes (moved back in the database rather than waited for).
    with app.state.store.engine.begin() as conn:
        conn.execute(
            update(schema.uploads).where(schema.uploads.c.id == old.id).values(expires_at=int(time.time()) - 1)
        )
    assert app.state.uploads.sweep_expired(force=True) == 1
    assert not _parts_dir(app, old.id).exists()
    assert app.state.uploads.rows.get(old.id, "org-personal").status == "expired"
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.parts.create(old.id, data=b"cd")
    assert err.value.body["message"] == f"Upload {old.id} is expired; only a pending Upload accepts this."  # type: ignore[index]


def test_create_rejects_bad_requests(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=9 * 1024**3, filename="x.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert err.value.param == "bytes"
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=1, filename="x.csv", mime_type="text/csv", purpose="fine-tune")
    assert err.value.code == "invalid_file_format"
    with pytest.raises(openai.BadRequestError) as err:
        client.uploads.create(bytes=1, filename="x.jsonl", mime_type="text/jsonl", purpose="nope")  # type: ignore[arg-type]
    assert err.value.param == "purpose"
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("../../etc")


def test_uploads_of_another_organization_are_invisible(http: TestClient, app: FastAPI) -> None:
    keys = app.state.keys
    acme = OpenAI(base_url="http://testserver/v1", api_key=keys.create("org-acme")[1], http_client=http, max_retries=0)
    other = OpenAI(base_url="http://testserver/v1", api_key=keys.create("org-b")[1], http_client=http, max_retries=0)
    upload = acme.uploads.create(bytes=2, filename="a.txt", mime_type="text/plain", purpose="user_data")
    part = acme.uploads.parts.create(upload.id, data=b"ab")
    for call in (
        lambda: other.uploads.parts.create(upload.id, data=b"ab"),
        lambda: other.uploads.complete(upload.id, part_ids=[part.id]),
        lambda: other.uploads.cancel(upload.id),
    ):
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert err.value.code == "upload_not_found"
    assert acme.uploads.complete(upload.id, part_ids=[part.id]).status == "completed"
    assert list(other.files.list()) == []
