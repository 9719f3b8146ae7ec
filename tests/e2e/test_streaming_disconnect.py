"""A live server streams chat tokens as they come, and stops generating when the client hangs up."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from e2e_support import LiveServer

pytestmark = pytest.mark.e2e
TINY = "openft/tiny-chat"
HI = [{"role": "user", "content": "Say hi."}]
# Seeded sampling that runs to max_tokens on tiny-chat (no early end of turn): the longest answer it fits.
LONG: dict[str, Any] = {"model": TINY, "messages": HI, "max_tokens": 950, "temperature": 1.0, "seed": 3}
HEADERS = {"Authorization": "Bearer sk-local"}


def _first_contents(live_server: LiveServer, count: int) -> float:
    """Open a LONG stream, read ``count`` content chunks, hang up; the seconds until the first one."""
    started = time.monotonic()
    first = 0.0
    seen = 0
    with httpx.Client(timeout=120) as http:  # its own connection, closed on leaving
        with http.stream(
            "POST", f"{live_server.base_url}/chat/completions", headers=HEADERS, json={**LONG, "stream": True}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[len("data: ") :])
                assert chunk["object"] == "chat.completion.chunk"
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    seen += 1
                    first = first or time.monotonic() - started
                    if seen == count:
                        break
    assert seen == count
    return first


def test_streams_tokens_and_stops_when_the_client_disconnects(live_server: LiveServer) -> None:
    url = f"{live_server.base_url}/chat/completions"
    with httpx.Client(timeout=300) as http:
        # Loads the model, then times a whole LONG answer: what an abandoned stream would cost if it kept going.
        assert http.post(url, headers=HEADERS, json={**LONG, "max_tokens": 2}).status_code == 200
        started = time.monotonic()
        reply = http.post(url, headers=HEADERS, json=LONG).json()
        full = time.monotonic() - started
    assert reply["usage"]["completion_tokens"] == LONG["max_tokens"]
    assert reply["choices"][0]["finish_reason"] == "length"

    # Real streaming: the first tokens arrive long before the whole answer could be done.
    first = _first_contents(live_server, 2)
    assert first < full / 2, (first, full)

    # Four more abandoned streams, then a short request: the server stays responsive. (That each
    # abandoned row leaves the running batch is shown with the backend's own counters in
    # tests/integration/test_stream_disconnect_rows.py.)
    started = time.monotonic()
    for _ in range(4):
        _first_contents(live_server, 2)
    client = live_server.client()
    small = client.chat.completions.create(model=TINY, messages=HI, max_tokens=3, temperature=0)
    elapsed = time.monotonic() - started
    assert small.usage is not None and small.usage.completion_tokens <= 3
    assert elapsed < 2 * full, (elapsed, full)
