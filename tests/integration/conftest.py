"""API fixtures: the app in-process (no network) driven by the official openai client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.settings import Settings


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings, embedded_worker=False)


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(http: TestClient) -> OpenAI:
    # TestClient is an httpx.Client, so the official client talks to the app without a socket.
    return OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
