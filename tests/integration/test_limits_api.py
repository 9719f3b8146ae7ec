"""Configurable limits, answered in OpenAI's style: requests per minute per key (429 + Retry-After),
request size (413 before the body is read), active jobs per organization (429)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.settings import Settings

pytestmark = pytest.mark.integration
ASSETS = Path(__file__).parents[1] / "assets"


@pytest.fixture
def limited(settings: Settings) -> Iterator[tuple[FastAPI, TestClient]]:
    small = settings.model_copy(
        update={
            "requests_per_minute": 3,
            "max_request_bytes": 4096,
            "max_file_bytes": 64 * 1024,
            "max_active_jobs_per_organization": 2,
        }
    )
    app = create_app(small, embedded_worker=False)
    with TestClient(app) as http:
        yield app, http


def test_requests_per_minute_per_key(limited: tuple[FastAPI, TestClient]) -> None:
    app, http = limited
    key_a, key_b = app.state.keys.create("org-a")[1], app.state.keys.create("org-b")[1]
    a = OpenAI(base_url="http://testserver/v1", api_key=key_a, http_client=http, max_retries=0)
    for _ in range(3):
        a.files.list()
    with pytest.raises(openai.RateLimitError) as err:
        a.files.list()
    assert err.value.status_code == 429 and err.value.code == "rate_limit_exceeded" and err.value.type == "requests"
    retry_after = int(err.value.response.headers["retry-after"])
    assert 55 <= retry_after <= 60  # 3 a minute: the minute-long window began with the first request
    assert f"Please try again in {retry_after}s" in err.value.message
    # Each key has its own budget.
    OpenAI(base_url="http://testserver/v1", api_key=key_b, http_client=http, max_retries=0).files.list()


def test_bodies_over_the_limit_get_413_before_they_are_read(limited: tuple[FastAPI, TestClient]) -> None:
    _, http = limited
    big = b'{"model": "openft/tiny-chat", "training_file": "' + b"x" * 5000 + b'"}'
    response = http.post("/v1/fine_tuning/jobs", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == {
        "message": "The request body is larger than the 4096 bytes this endpoint accepts.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }

    # A body without Content-Length (chunked) is cut off once the bytes received pass the limit.
    def chunks() -> Iterator[bytes]:
        yield big[:3000]
        yield big[3000:]

    response = http.post("/v1/fine_tuning/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    # Files have their own, larger limit (max_file_bytes plus room for the multipart framing).
    files = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=http, max_retries=0).files
    assert files.create(file=("ok.jsonl", b'{"a": 1}\n' * 1000), purpose="fine-tune").bytes == 9000
    with pytest.raises(openai.BadRequestError) as err:
        files.create(file=("big.jsonl", b'{"a": 1}\n' * 10_000), purpose="fine-tune")
    assert err.value.code == "file_too_large"
    with pytest.raises(openai.APIStatusError) as err2:
        files.create(file=("huge.jsonl", b"x" * (2 * 1024 * 1024)), purpose="fine-tune")
    assert err2.value.status_code == 413


def test_active_jobs_per_organization(limited: tuple[FastAPI, TestClient]) -> None:
    _, http = limited
    client = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=http, max_retries=0)
    training_file = client.files.create(
        file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
    )
    first = client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file.id)
    client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file.id)
    with pytest.raises(openai.RateLimitError) as err:
        client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file.id)
    assert err.value.code == "rate_limit_exceeded" and "maximum of 2 active fine-tuning jobs" in err.value.message
    client.fine_tuning.jobs.cancel(first.id)  # a finished job no longer counts
    assert client.fine_tuning.jobs.create(model="openft/tiny-chat", training_file=training_file.id).id
