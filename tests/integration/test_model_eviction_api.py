"""A server whose model budget holds one model: asking for a second base model unloads the least recently
used one (the log says so), and that one loads again on its next request, answering as before. Real
HTTP on loopback, the official client, and a second base model registered as a local directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from openai import OpenAI

from openft.api.app import create_app
from openft.settings import Settings
from serving_support import loopback_server, twin_model

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
TWIN = "local/tiny-twin"
HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the store plays no part in what is tested here."""
    return f"sqlite:///{tmp_path / 'openft.db'}"


def _answer(client: OpenAI, model: str) -> str:
    reply = client.chat.completions.create(model=model, messages=HI, max_tokens=12, temperature=1.0, seed=5)
    assert reply.model == model and reply.usage is not None and reply.usage.completion_tokens > 0
    return reply.choices[0].message.content or ""


def test_the_least_recently_used_model_is_unloaded_and_loads_again(
    settings: Settings, models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    twin = twin_model(models_dir, tmp_path / "tiny-twin")
    one_model_mb = (twin / "model.safetensors").stat().st_size / 2**20  # fp32 weights, as served on CPU
    app = create_app(settings.model_copy(update={"serving_model_budget_mb": 1.5 * one_model_mb}), embedded_worker=False)
    app.state.store.add_local_model(TWIN, str(twin))
    caplog.set_level(logging.INFO, logger="openft.serving.pool")
    with loopback_server(app) as base_url:
        client = OpenAI(base_url=base_url, api_key="sk-local", max_retries=0, timeout=120)
        first = _answer(client, TINY)
        backend = app.state.backend_if_loaded()
        assert backend.loaded() == {TINY: []}

        other = _answer(client, TWIN)
        assert backend.loaded() == {TWIN: []}  # tiny-chat went to make room
        assert other != first  # each model answers with its own weights

        assert _answer(client, TINY) == first  # loaded again, the same answer
        assert backend.loaded() == {TINY: []}
        assert _answer(client, TWIN) == other
        assert backend.base_loads == {TINY: 2, TWIN: 2}
        assert backend.base_evictions == {TINY: 2, TWIN: 1}
    evicted = [record.__dict__["model"] for record in caplog.records if record.__dict__.get("action") == "base_evicted"]
    assert evicted == [TINY, TWIN, TINY]
