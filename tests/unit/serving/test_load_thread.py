"""Base models load on a thread of their own (``pool._in_a_thread_of_its_own``): the OpenMP team that a
load's parallel ops create ends with that thread instead of living on beside the engine's."""

from __future__ import annotations

import threading

import pytest

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.serving.pool import _in_a_thread_of_its_own


@pytest.fixture
def tiny() -> BaseModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return base


def test_the_load_runs_on_another_thread_that_has_ended_when_it_returns(tiny: BaseModel) -> None:
    seen: list[threading.Thread] = []

    def load(base: object) -> object:
        seen.append(threading.current_thread())
        return ("loaded", base)

    assert _in_a_thread_of_its_own(load, tiny) == ("loaded", tiny)  # type: ignore[arg-type]  # any result
    assert seen[0] is not threading.current_thread()
    assert not seen[0].is_alive()


def test_a_failed_load_raises_on_the_caller_thread(tiny: BaseModel) -> None:
    def load(base: object) -> object:
        raise OSError("no weights")

    with pytest.raises(OSError, match="no weights"):
        _in_a_thread_of_its_own(load, tiny)  # type: ignore[arg-type]  # any result
