"""HFBackend.stream_chat on openft/tiny-chat: same text and usage as chat, stop strings, cancellation."""

from __future__ import annotations

import threading
import time

import pytest

from openft.errors import InvalidRequest
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.serving.backend import SamplingParams, ServedModel, StreamDelta
from openft.serving.hf import HFBackend

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> HFBackend:
    return HFBackend(tmp_path_factory.mktemp("models"), device="cpu")


@pytest.fixture(scope="module")
def served() -> ServedModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return ServedModel(id=TINY_CHAT, base=base)


def _collect(deltas: list[StreamDelta], index: int = 0) -> tuple[str, str | None]:
    text = "".join(d.text for d in deltas if d.index == index and d.usage is None)
    reasons = [d.finish_reason for d in deltas if d.index == index and d.finish_reason]
    assert len(reasons) == 1
    return text, reasons[0]


def test_stream_matches_chat(backend: HFBackend, served: ServedModel) -> None:
    for params in (SamplingParams(max_tokens=20, temperature=0), SamplingParams(max_tokens=7, temperature=0)):
        # (tiny-chat's greedy answer is a run of newlines)
        gen = backend.chat(served, HI, params)
        deltas = list(backend.stream_chat(served, HI, params))
        assert sum(1 for d in deltas if d.text) >= 2  # sent in pieces, not as one block
        assert _collect(deltas) == (gen.choices[0].text, gen.choices[0].finish_reason)
        assert deltas[-1].usage == (gen.prompt_tokens, gen.completion_tokens)
        assert all(d.usage is None for d in deltas[:-1])


def test_stream_matches_seeded_sampling(backend: HFBackend, served: ServedModel) -> None:
    params = SamplingParams(max_tokens=40, temperature=1.0, seed=7)
    gen = backend.chat(served, HI, params)
    deltas = list(backend.stream_chat(served, HI, params))
    assert _collect(deltas) == (gen.choices[0].text, gen.choices[0].finish_reason)
    assert deltas[-1].usage == (gen.prompt_tokens, gen.completion_tokens)


def test_stream_honours_stop_strings(backend: HFBackend, served: ServedModel) -> None:
    sampled = {"max_tokens": 60, "temperature": 1.0, "seed": 11}
    full = backend.chat(served, HI, SamplingParams(**sampled)).choices[0].text
    assert len(full) > 20
    stop = full[12:15]  # occurs in the answer, first at or before index 12
    params = SamplingParams(**sampled, stop=[stop, "never-there"])
    gen = backend.chat(served, HI, params)
    deltas = list(backend.stream_chat(served, HI, params))
    text, reason = _collect(deltas)
    assert text == gen.choices[0].text == full[: full.find(stop)]
    assert stop not in "".join(d.text for d in deltas)
    assert reason == "stop"
    assert deltas[-1].usage == (gen.prompt_tokens, gen.completion_tokens)


def test_stream_n_choices(backend: HFBackend, served: ServedModel) -> None:
    params = SamplingParams(max_tokens=6, temperature=0, n=2)
    gen = backend.chat(served, HI, params)
    deltas = list(backend.stream_chat(served, HI, params))
    assert _collect(deltas, 0) == _collect(deltas, 1) == (gen.choices[0].text, gen.choices[0].finish_reason)
    assert deltas[-1].usage == (gen.prompt_tokens, gen.completion_tokens)


def test_bad_requests_raise_before_streaming(backend: HFBackend, served: ServedModel) -> None:
    with pytest.raises(InvalidRequest) as err:
        backend.stream_chat(served, HI, SamplingParams(max_tokens=10**6))
    assert err.value.param == "messages"
    with pytest.raises(InvalidRequest) as err:
        backend.stream_chat(served, HI, SamplingParams(temperature=7))
    assert err.value.param == "temperature"


def _holds_rows(backend: HFBackend, base_id: str) -> bool:
    return backend.batch_stats()[base_id]["active_rows"] > 0


def test_cancel_stops_generation_and_frees_the_base(backend: HFBackend, served: ServedModel) -> None:
    cancel = threading.Event()
    params = SamplingParams(max_tokens=400, temperature=0.9, seed=3)
    deltas = backend.stream_chat(served, HI, params, cancel=cancel)
    got = [next(deltas), next(deltas)]
    assert all(d.usage is None for d in got)
    cancel.set()
    rest = list(deltas)  # ends soon, without a usage item nor a finish_reason
    assert all(d.usage is None and d.finish_reason is None for d in rest)
    assert len(got) + len(rest) < 400  # at most one delta per token: far fewer tokens were generated
    deadline = time.monotonic() + 10
    while _holds_rows(backend, TINY_CHAT) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _holds_rows(backend, TINY_CHAT)


def test_closing_the_iterator_cancels(backend: HFBackend, served: ServedModel) -> None:
    cancel = threading.Event()
    deltas = backend.stream_chat(served, HI, SamplingParams(max_tokens=400, temperature=0.9), cancel=cancel)
    next(deltas)
    deltas.close()  # type: ignore[attr-defined]
    assert cancel.is_set()
    started = time.monotonic()
    # The base is free again well before 400 tokens could have been generated.
    gen = backend.chat(served, HI, SamplingParams(max_tokens=3, temperature=0))
    assert gen.completion_tokens <= 3
    assert time.monotonic() - started < 30
