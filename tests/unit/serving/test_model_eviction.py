"""HFBackend's base models under a memory budget, on tiny-chat and a twin with other weights: the least
recently used idle model is unloaded (its engine thread stopped) and reloaded on demand; a model with a
request in flight is kept, over budget, until that request ends; one larger than the budget is served."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend
from openft.serving.pool import measured_bytes
from serving_support import twin_model, wait_for

HI = [{"role": "user", "content": "Say hi."}]
SEEDED = SamplingParams(max_tokens=12, temperature=1.0, seed=5)  # greedy tiny-chat says only newlines
TWIN = "local/tiny-twin"


@pytest.fixture(scope="module")
def tiny() -> ServedModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return ServedModel(id=TINY_CHAT, base=base)


@pytest.fixture(scope="module")
def twin(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny: ServedModel) -> ServedModel:
    path = twin_model(models_dir, tmp_path_factory.mktemp("twin") / "tiny-twin")
    base = BaseModel(id=TWIN, source="local", path=str(path), context_length=1024, lora_learning_rate=1e-2)
    return ServedModel(id=TWIN, base=base)


@pytest.fixture(scope="module")
def model_mb(models_dir: Path, tiny: ServedModel) -> float:
    """What one tiny-chat holds in memory, in MB, measured on a backend of its own."""
    backend = HFBackend(models_dir, device="cpu")
    backend.chat(tiny, HI, SEEDED)
    return backend.resident_bytes()[TINY_CHAT] / 2**20


def _new_engine_thread(before: set[threading.Thread], model_id: str) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t not in before and t.name == f"openft-engine-{model_id}"]
    return thread


def test_resident_size_is_what_the_weights_take(models_dir: Path, tiny: ServedModel, model_mb: float) -> None:
    weights = (models_dir / tiny.base.cache_name / "model.safetensors").stat().st_size / 2**20
    assert model_mb == pytest.approx(weights, rel=0.02)  # fp32 on CPU: the file's tensors, and a few buffers
    backend = HFBackend(models_dir, device="cpu")
    loaded = backend.pool.get(tiny.base)
    assert backend.resident_bytes()[TINY_CHAT] == measured_bytes(loaded.model)


def test_the_least_recently_used_idle_model_is_unloaded_and_reloaded(
    models_dir: Path, tiny: ServedModel, twin: ServedModel, model_mb: float
) -> None:
    backend = HFBackend(models_dir, device="cpu", model_budget_mb=1.5 * model_mb)  # one fits, two do not
    before = set(threading.enumerate())
    first = backend.chat(tiny, HI, SEEDED)
    assert backend.loaded() == {TINY_CHAT: []}
    engine = _new_engine_thread(before, TINY_CHAT)

    other = backend.chat(twin, HI, SEEDED)
    assert backend.loaded() == {TWIN: []}
    assert backend.base_evictions == {TINY_CHAT: 1}
    assert not engine.is_alive()  # its engine stopped with it
    assert other.choices[0].text != first.choices[0].text  # the twin's own weights answer

    assert backend.chat(tiny, HI, SEEDED) == first  # loaded again, same answer
    assert backend.loaded() == {TINY_CHAT: []}
    assert backend.base_loads == {TINY_CHAT: 2, TWIN: 1}
    assert backend.base_evictions == {TINY_CHAT: 1, TWIN: 1}
    assert backend.chat(twin, HI, SEEDED) == other


def test_a_model_with_a_request_in_flight_is_never_evicted(
    models_dir: Path, tiny: ServedModel, twin: ServedModel, model_mb: float
) -> None:
    backend = HFBackend(models_dir, device="cpu", model_budget_mb=1.5 * model_mb)
    before = set(threading.enumerate())
    # Seeded sampling that runs to max_tokens on tiny-chat (no early end of turn).
    stream = backend.stream_chat(tiny, HI, SamplingParams(max_tokens=400, temperature=1.0, seed=3))
    next(stream)
    engine = _new_engine_thread(before, TINY_CHAT)

    # Loading the twin puts the pool over budget; tiny-chat, least recently used but busy, stays (and
    # so does the twin, the most recently used).
    assert backend.chat(twin, HI, SEEDED).completion_tokens > 0
    assert backend.loaded() == {TINY_CHAT: [], TWIN: []}
    assert backend.base_evictions == {}

    rest = list(stream)
    assert rest[-2].finish_reason == "length"
    assert rest[-1].usage is not None and rest[-1].usage[1] == 400  # its whole answer, on the model it began on
    # Idle now, and the least recently used: it goes as soon as its request has ended.
    wait_for(lambda: backend.loaded() == {TWIN: []}, 10, "tiny-chat unloaded once idle")
    assert backend.base_evictions == {TINY_CHAT: 1}
    wait_for(lambda: not engine.is_alive(), 10, "its engine thread ends")
    assert backend.base_loads == {TINY_CHAT: 1, TWIN: 1}


def test_a_model_larger_than_the_budget_is_served_without_reloading(
    models_dir: Path, tiny: ServedModel, model_mb: float, caplog: pytest.LogCaptureFixture
) -> None:
    backend = HFBackend(models_dir, device="cpu", model_budget_mb=model_mb / 2)
    with caplog.at_level(logging.WARNING, logger="openft.serving.pool"):
        first = backend.chat(tiny, HI, SEEDED)
    assert "alone exceeds the" in caplog.text
    assert backend.chat(tiny, HI, SEEDED) == first
    assert backend.loaded() == {TINY_CHAT: []}
    assert backend.base_loads == {TINY_CHAT: 1} and backend.base_evictions == {}
