"""``response_format: json_schema`` on tiny-chat: every answer validates against its schema, sampled or
greedy, with room to close before ``max_tokens``; schemas that cannot be enforced are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from openft.errors import InvalidRequest
from openft.models.catalog import TINY_CHAT, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend
from openft.serving.schema_constraint import schema_grammar

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "color": {"enum": ["red", "green", "blue"]},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["name", "color", "age", "score"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a person as JSON."}]


@pytest.fixture(scope="module")
def backend(models_dir: Path) -> HFBackend:
    return HFBackend(models_dir, device="cpu")


@pytest.fixture(scope="module")
def tiny() -> ServedModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return ServedModel(id=TINY_CHAT, base=base)


def _params(**overrides: Any) -> SamplingParams:
    values: dict[str, Any] = {"max_tokens": 80, "response_format": "json_schema", "json_schema": PERSON}
    values.update(overrides)
    return SamplingParams(**values)


def test_sampled_answers_validate_for_every_seed(backend: HFBackend, tiny: ServedModel) -> None:
    answers = set()
    for seed in range(6):
        gen = backend.chat(tiny, ASK, _params(temperature=1.0, seed=seed, n=2))
        for choice in gen.choices:
            jsonschema.validate(json.loads(choice.text), PERSON)
            answers.add(choice.text)
    assert len(answers) > 1  # sampling still samples, inside the schema


def test_greedy_and_streamed_answers_validate(backend: HFBackend, tiny: ServedModel) -> None:
    whole = backend.chat(tiny, ASK, _params(temperature=0)).choices[0].text
    streamed = "".join(d.text for d in backend.stream_chat(tiny, ASK, _params(temperature=0)))
    assert streamed == whole
    jsonschema.validate(json.loads(whole), PERSON)


def test_answers_close_within_a_tight_max_tokens(backend: HFBackend, tiny: ServedModel) -> None:
    free = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "array"}}, "required": ["a"]}
    for seed in range(4):
        gen = backend.chat(tiny, ASK, _params(temperature=1.0, seed=seed, max_tokens=24, json_schema=free))
        assert gen.completion_tokens <= 24
        jsonschema.validate(json.loads(gen.choices[0].text), free)


def test_logprobs_come_from_the_constrained_distribution(backend: HFBackend, tiny: ServedModel) -> None:
    gen = backend.chat(tiny, ASK, _params(temperature=0, logprobs=2))
    entries = gen.choices[0].logprobs or []
    assert "".join(e["token"] for e in entries) == gen.choices[0].text
    assert entries[0]["token"] == "{" and entries[0]["logprob"] == pytest.approx(0.0)  # the only valid start


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "frobnicate"},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"type": "string", "pattern": "("},
    ],
)
def test_schemas_that_cannot_be_enforced_are_refused(
    backend: HFBackend, tiny: ServedModel, schema: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        backend.chat(tiny, ASK, _params(json_schema=schema))
    assert raised.value.param == "response_format"


def test_huge_schemas_are_refused() -> None:
    schema = {"type": "object", "properties": {f"key{i}": {"type": "string"} for i in range(5000)}}
    with pytest.raises(InvalidRequest, match="larger than"):
        schema_grammar(schema)
