"""The JSON state machine behind ``response_format: json_object``, and constrained decoding on tiny-chat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend
from openft.serving.json_constraint import MAX_DEPTH, JsonConstraint, JsonState

VALID = [
    "{}",
    '{"a": 1}',
    '{"a":[1,2.5e-3,{"b":null}],"c":"x\\u00e9\\n","d":true,"e":false}',
    '{"a": -0.5, "b": [], "c": {}}',
    '{"é": "ü"}',
]
INVALID = ["[]", " {}", "{a:1}", '{"a":01}', '{"a":1,}', "{}x", '{"a"  :1}', '{"a":tru}', '{"a":"\x01"}', '"s"']


@pytest.mark.parametrize("text", VALID)
def test_valid_objects_are_accepted_and_every_prefix_closes_to_valid_json(text: str) -> None:
    end = JsonState().feed(text)
    assert end is not None and end.done and end.closing() == ""
    for i in range(len(text)):
        state = JsonState().feed(text[:i])
        assert state is not None and not state.done
        closed = text[:i] + state.closing()
        assert isinstance(json.loads(closed), dict), closed


@pytest.mark.parametrize("text", INVALID)
def test_invalid_texts_are_rejected(text: str) -> None:
    state = JsonState().feed(text)
    assert state is None or not state.done


def test_nesting_is_bounded() -> None:
    assert JsonState().feed('{"a":' + "[" * (MAX_DEPTH - 1)) is not None
    assert JsonState().feed('{"a":' + "[" * MAX_DEPTH) is None


def test_constraint_keeps_room_to_close() -> None:
    texts: list[str | None] = ["{", "}", '"', "a", ":", "1", '{"k":', None, "eos"]
    constraint = JsonConstraint(texts, eos_ids=[8])
    assert not constraint.allows(8, remaining=5)  # nothing generated yet: no end of turn
    assert not constraint.allows(7, remaining=5)  # never a special token
    assert constraint.allows(0, remaining=1)  # "{" leaves "}" to close it
    assert not constraint.allows(0, remaining=0)
    constraint.advance(6)  # '{"k":' needs at least "0}" more
    assert not constraint.allows(0, remaining=1) and constraint.allows(5, remaining=1)
    assert texts[constraint.forced(remaining=1)] == "1"  # no "0" token: another value that fits
    for token in (5, 1):
        constraint.advance(token)
    assert constraint.state.done and constraint.forced() == 8 and constraint.allows(8, remaining=0)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=40, temperature=1.0, seed=1),
        SamplingParams(max_tokens=9, temperature=1.0, seed=2),
        SamplingParams(max_tokens=30, temperature=0),
        SamplingParams(max_tokens=25, temperature=1.5, seed=3, n=3),
    ],
)
def test_tiny_chat_answers_parse_as_json_objects(models_dir: Path, params: SamplingParams) -> None:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    backend = _backend(models_dir)
    gen = backend.chat(
        ServedModel(id=TINY_CHAT, base=base),
        [{"role": "user", "content": "JSON please"}],
        SamplingParams(**{**params.__dict__, "response_format": "json_object"}),
    )
    assert len(gen.choices) == params.n
    for choice in gen.choices:
        assert isinstance(json.loads(choice.text), dict), choice.text
    plain = backend.chat(ServedModel(id=TINY_CHAT, base=base), [{"role": "user", "content": "JSON please"}], params)
    with pytest.raises(ValueError):  # the same model, unconstrained, writes no JSON
        json.loads(plain.choices[0].text)


_BACKENDS: dict[Path, HFBackend] = {}


def _backend(models_dir: Path) -> HFBackend:
    return _BACKENDS.setdefault(models_dir, HFBackend(models_dir, device="cpu"))
