"""Generation waits on its own threads and stops for a client that hangs up. Real HTTP on loopback (uvicorn
in a thread), the official client for the API calls measured, raw sockets for the requests a test hangs
up on, and the app's own backend and thread counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from openft.api.app import create_app
from openft.settings import Settings
from serving_support import loopback_server, raw_post, wait_for

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
HI = [{"role": "user", "content": "Say hi."}]
# Seeded sampling that runs to max_tokens on tiny-chat (no early end of turn), chat and legacy.
LONG_CHAT: dict[str, Any] = {"model": TINY, "messages": HI, "max_tokens": 950, "temperature": 1.0, "seed": 3}
LONG_COMPLETION: dict[str, Any] = {"model": TINY, "prompt": "Say hi.", "max_tokens": 950, "temperature": 1.0, "seed": 3}
ASSETS = Path(__file__).parents[1] / "assets"
LOAD = 48
"""Requests kept waiting at once: more than the 40 threads of FastAPI's default pool."""


def _rows(app: Any) -> int:
    return int(app.state.backend_if_loaded().batch_stats()[TINY]["active_rows"])


def test_jobs_and_keys_answer_promptly_while_every_generation_thread_is_busy(settings: Settings) -> None:
    busy = settings.model_copy(
        update={"serving_generation_threads": 2, "serving_max_batch_rows": 2, "serving_threads": 1}
    )
    app = create_app(busy, embedded_worker=False)
    _, key = app.state.keys.create("org-acme", "proj_acme")
    threads = app.state.generations
    took: dict[str, float] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        assert threads.busy == 2, f"{name}: a generation thread was free"
        started = time.monotonic()
        result = call()
        took[name] = time.monotonic() - started
        return result

    with loopback_server(app) as base_url:
        client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)
        training = client.files.create(
            file=("t.jsonl", (ASSETS / "tiny_train.jsonl").read_bytes()), purpose="fine-tune"
        )
        client.chat.completions.create(model=TINY, messages=HI, max_tokens=2)  # loads the model
        sockets = [raw_post(base_url, "/chat/completions", LONG_CHAT, key) for _ in range(LOAD - 4)]
        sockets += [raw_post(base_url, "/chat/completions", {**LONG_CHAT, "stream": True}, key) for _ in range(4)]
        try:
            wait_for(lambda: threads.busy == 2 and threads.waiting >= LOAD - 8, 60, "every generation thread busy")
            _, fresh = app.state.keys.create("org-acme", "proj_acme")  # a key whose lookup nothing has cached
            other = OpenAI(base_url=base_url, api_key=fresh, max_retries=0, timeout=60)
            job = timed("create", lambda: client.fine_tuning.jobs.create(model=TINY, training_file=training.id))
            listed = timed("list", lambda: client.fine_tuning.jobs.list(limit=5))
            seen = timed("retrieve with a new key", lambda: other.fine_tuning.jobs.retrieve(job.id))
            cancelled = timed("cancel", lambda: client.fine_tuning.jobs.cancel(job.id))
            # Still saturated. Not "the same two rows": tiny-chat decodes 950 tokens in a few seconds, so a
            # running request may end and hand its thread to a queued one while the calls above run.
            assert threads.busy == 2 and threads.waiting >= LOAD - 8, (threads.busy, threads.waiting)
        finally:
            for sock in sockets:
                sock.close()
        # Hung up: queued requests never start, running ones stop at their next token.
        wait_for(lambda: threads.busy == threads.waiting == _rows(app) == 0, 30, "hung-up requests end")
    assert [j.id for j in listed.data] == [job.id] and seen.id == job.id and cancelled.status == "cancelled"
    assert max(took.values()) < 1.0, took


@pytest.mark.parametrize(("path", "body"), [("/chat/completions", LONG_CHAT), ("/completions", LONG_COMPLETION)])
def test_a_client_that_hangs_up_frees_its_rows(settings: Settings, path: str, body: dict[str, Any]) -> None:
    app = create_app(settings.model_copy(update={"serving_threads": 1}), embedded_worker=False)
    with loopback_server(app) as base_url:
        client = OpenAI(base_url=base_url, api_key="sk-local", max_retries=0, timeout=60)
        client.chat.completions.create(model=TINY, messages=HI, max_tokens=2)  # loads the model
        stats = app.state.backend_if_loaded().batch_stats
        before = stats()[TINY]["steps"]
        sock = raw_post(base_url, path, body)
        wait_for(lambda: stats()[TINY]["steps"] - before >= 20, 60, "the request is decoding")
        assert _rows(app) == 1
        sock.close()
        wait_for(lambda: _rows(app) == 0, 10, "its row dropped")
        steps = stats()[TINY]["steps"] - before
        time.sleep(0.2)
        assert stats()[TINY]["steps"] - before == steps  # nothing decodes any more
    assert steps < body["max_tokens"] / 3, steps  # dropped long before its answer would have ended
