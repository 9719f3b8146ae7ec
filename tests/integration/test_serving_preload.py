"""Preloading at start (``OPENFT_SERVING_PRELOAD``): a home that served a model loads it again as the API
starts, before any request, and its first request reuses that load; unknown ids never stop a start."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.models.catalog import TINY_CHAT
from openft.serving import warmup
from openft.settings import Settings
from serving_support import wait_for

pytestmark = pytest.mark.integration


def _app(settings: Settings, preload: str) -> TestClient:
    configured = settings.model_copy(update={"serving_preload": preload})
    return TestClient(create_app(configured, embedded_worker=False))


def test_the_recently_served_model_is_loaded_before_its_first_request(settings: Settings) -> None:
    warmup.remember(settings.home, TINY_CHAT)
    with _app(settings, "recent") as http:
        state = http.app.state  # type: ignore[attr-defined]
        wait_for(lambda: state.backend_if_loaded() is not None, 120, "the backend")
        backend = state.backend_if_loaded()
        wait_for(lambda: TINY_CHAT in backend.loaded(), 120, "tiny-chat preloaded")
        client = OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)
        client.chat.completions.create(model=TINY_CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert backend.base_loads[TINY_CHAT] == 1


def test_loads_are_recorded_most_recent_first(tmp_path: Path) -> None:
    for model_id in ("a", "b", "a", "c"):
        warmup.remember(tmp_path, model_id)
    assert warmup.preload_ids("recent", tmp_path) == ["c", "a"]
    assert warmup.preload_ids("none", tmp_path) == []
    assert warmup.preload_ids(" x , y ", tmp_path) == ["x", "y"]
    assert warmup.preload_ids("recent", tmp_path / "fresh") == []


def test_unknown_models_are_skipped_and_the_server_starts(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="openft.serving.warmup"), _app(settings, "no/such-model") as http:
        assert http.get("/health").status_code == 200
        wait_for(lambda: "not preloading no/such-model" in caplog.text, 60, "the preload's warning")
        assert http.app.state.backend_if_loaded() is None  # type: ignore[attr-defined]  # nothing else to load
