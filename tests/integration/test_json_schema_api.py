"""``response_format: json_schema`` through the official client: answers validate against the schema
(required keys, an enum, number ranges) for every seed, streamed or not; unenforceable schemas are a 400."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
ASK = [{"role": "user", "content": "Describe a person as JSON."}]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "height": {"type": "number", "minimum": 1.2, "maximum": 2.2},
    },
    "required": ["name", "color", "age", "height"],
    "additionalProperties": False,
}
FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}


def test_every_sampled_answer_validates(client: OpenAI) -> None:
    colors = set()
    for seed in range(5):
        reply = client.chat.completions.create(
            model=TINY, messages=ASK, max_tokens=80, temperature=1.0, seed=seed, n=2, response_format=FORMAT
        )
        for choice in reply.choices:
            answer = json.loads(choice.message.content or "")
            jsonschema.validate(answer, SCHEMA)
            colors.add(answer["color"])
    assert colors <= {"red", "green", "blue"}


def test_a_streamed_answer_validates(client: OpenAI) -> None:
    chunks = client.chat.completions.create(
        model=TINY, messages=ASK, max_tokens=80, temperature=0.7, seed=3, stream=True, response_format=FORMAT
    )
    jsonschema.validate(json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)), SCHEMA)


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": "not an object"}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frobnicate"}}},
    ],
)
def test_schemas_that_cannot_be_enforced_are_a_400(client: OpenAI, response_format: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=TINY, messages=ASK, max_tokens=8, response_format=response_format)
    error = raised.value.body
    assert isinstance(error, dict) and error["param"] == "response_format" and error["type"] == "invalid_request_error"
