"""An upload that hits a full disk fails with a clear error and leaves neither a file object nor a blob."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.settings import Settings

pytestmark = pytest.mark.faults


def _big_jsonl(n_bytes: int) -> bytes:
    line = json.dumps({"messages": [{"role": "user", "content": "x" * 1000}, {"role": "assistant", "content": "y"}]})
    return ((line + "\n") * (n_bytes // (len(line) + 1) + 1)).encode()


@pytest.fixture
def client(settings: Settings) -> Iterator[OpenAI]:
    with TestClient(create_app(settings, embedded_worker=False)) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)


def _assert_nothing_stored(client: OpenAI, settings: Settings) -> None:
    assert list(client.files.list()) == []
    assert sorted(p.name for p in settings.files_dir.iterdir()) == []


@pytest.fixture
def small_disk(settings: Settings) -> Iterator[Path]:
    """A 1 MiB tmpfs as the blob directory (needs root and a kernel that allows the mount)."""
    settings.files_dir.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(settings.files_dir)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); test_enospc_in_the_write_path covers it")
    try:
        yield settings.files_dir
    finally:
        subprocess.run(["umount", str(settings.files_dir)], check=True)


def test_an_upload_larger_than_the_free_space_fails_cleanly(
    small_disk: Path, settings: Settings, client: OpenAI
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", _big_jsonl(3 * 1024 * 1024)), purpose="fine-tune")
    assert caught.value.status_code == 507
    assert caught.value.body["code"] == "insufficient_storage"  # type: ignore[index]
    _assert_nothing_stored(client, settings)
    # The space is free again: a file that fits is stored.
    small = client.files.create(file=("small.jsonl", _big_jsonl(10_000)), purpose="fine-tune")
    assert client.files.retrieve(small.id).bytes > 0


def test_enospc_in_the_write_path(settings: Settings, client: OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the blob write's flush to disk is where a full disk surfaces
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("train.jsonl", _big_jsonl(50_000)), purpose="fine-tune")
    monkeypatch.undo()
    assert caught.value.status_code == 507
    assert "out of disk space" in caught.value.message
    _assert_nothing_stored(client, settings)
