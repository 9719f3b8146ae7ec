"""A client that hangs up mid-stream has its row dropped from the running batch; another request in the
same batch goes on to its end. Real HTTP on loopback (uvicorn in a thread), the app's own backend."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving_support import loopback_server

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
HI = [{"role": "user", "content": "Say hi."}]
HEADERS = {"Authorization": "Bearer sk-local"}


@pytest.fixture
def base_url(app: FastAPI) -> Iterator[str]:
    with loopback_server(app) as url:
        yield url


def _active_rows(app: FastAPI) -> int:
    return int(app.state.backend_if_loaded().batch_stats()[TINY]["active_rows"])


def test_a_disconnected_stream_leaves_the_batch(app: FastAPI, base_url: str) -> None:
    # Seeded sampling that runs to max_tokens on tiny-chat (no early end of turn).
    long: dict[str, Any] = {"model": TINY, "messages": HI, "max_tokens": 300, "temperature": 1.0, "seed": 3}
    with httpx.Client(timeout=600) as http:
        assert http.post(f"{base_url}/chat/completions", headers=HEADERS, json={**long, "max_tokens": 2}).is_success
    kept: list[dict[str, Any]] = []
    other = threading.Thread(
        target=lambda: kept.append(
            httpx.post(f"{base_url}/chat/completions", headers=HEADERS, json=long, timeout=600).json()
        )
    )
    other.start()
    while not _active_rows(app):  # the kept request is decoding
        time.sleep(0.01)
    seen = 0
    with httpx.Client(timeout=600) as http:
        body = {**long, "seed": 5, "stream": True}
        with http.stream("POST", f"{base_url}/chat/completions", headers=HEADERS, json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    seen += 1
                    if seen == 3:
                        break
    assert seen == 3
    assert app.state.backend_if_loaded().batch_stats()[TINY]["max_rows"] == 2  # the stream joined the batch
    dropped = False
    while other.is_alive() and not dropped:
        dropped = _active_rows(app) == 1  # the stream's row is gone, the kept one still decodes
        time.sleep(0.005)
    other.join(timeout=600)
    (reply,) = kept
    assert dropped
    assert reply["usage"]["completion_tokens"] == 300 and reply["choices"][0]["finish_reason"] == "length"
    deadline = time.monotonic() + 10
    while _active_rows(app) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _active_rows(app) == 0
