"""/v1/files through the official client, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


def test_upload_retrieve_content_delete(client: OpenAI) -> None:
    data = (ASSETS / "tiny_train.jsonl").read_bytes()
    f = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert f.id.startswith("file-") and f.bytes == len(data) and f.purpose == "fine-tune"
    assert f.filename == "train.jsonl" and f.status == "processed" and f.object == "file"
    assert client.files.retrieve(f.id).model_dump() == f.model_dump()
    assert client.files.content(f.id).read() == data
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError) as err:
        client.files.retrieve(f.id)
    assert err.value.code == "file_not_found" and f.id in err.value.message


def test_list_filters_orders_and_paginates(client: OpenAI) -> None:
    ids = [client.files.create(file=(f"f{i}.jsonl", b'{"a": 1}\n'), purpose="fine-tune").id for i in range(3)]
    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    page = client.files.list(purpose="fine-tune", limit=2)
    assert [f.id for f in page.data] == [ids[2], ids[1]] and page.has_more
    assert [f.id for f in page.iter_pages().__next__().data] == [ids[2], ids[1]]
    assert [f.id for f in client.files.list(purpose="fine-tune")] == ids[::-1]
    assert [f.id for f in client.files.list(order="asc")] == [*ids, other.id]
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=1, after=ids[1])] == [ids[0]]


def test_rejects_bad_uploads_with_openai_errors(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("train.jsonl", b'{"ok": 1}\n[1, 2]\n'), purpose="fine-tune")
    assert "Line 2 is not a dictionary" in err.value.message and err.value.param == "file"
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("train.jsonl", b'{"ok": 1}\n{"broken": \n'), purpose="fine-tune")
    assert "Line 2 is not valid JSON" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("train.csv", b"a,b\n"), purpose="fine-tune")
    assert "jsonl" in err.value.message.lower()
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    assert err.value.param == "purpose"
    assert list(client.files.list()) == []  # nothing half-stored


def test_file_names_are_never_paths(client: OpenAI, settings) -> None:  # type: ignore[no-untyped-def]
    f = client.files.create(file=("../../evil.jsonl", b'{"a": 1}\n'), purpose="fine-tune")
    assert f.filename == "evil.jsonl"
    assert sorted(p.name for p in settings.files_dir.iterdir()) == [f.id]
