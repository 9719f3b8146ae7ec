"""Chat and legacy completion parameters through the official client: response_format, developer role
and text parts, max_completion_tokens, ignored optional parameters, echo."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
HI = [{"role": "user", "content": "Say hi."}]


def test_json_object_and_json_schema_answers_parse(client: OpenAI) -> None:
    schema = {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    for response_format in ({"type": "json_object"}, {"type": "json_schema", "json_schema": schema}):
        reply = client.chat.completions.create(
            model=TINY,
            messages=HI,
            max_tokens=30,
            temperature=1.0,
            seed=2,
            n=2,
            response_format=response_format,  # type: ignore[arg-type]
        )
        for choice in reply.choices:
            assert isinstance(json.loads(choice.message.content or ""), dict)
    chunks = list(
        client.chat.completions.create(
            model=TINY, messages=HI, max_tokens=30, temperature=0, stream=True, response_format={"type": "json_object"}
        )
    )
    assert isinstance(json.loads("".join(c.choices[0].delta.content or "" for c in chunks)), dict)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=TINY, messages=HI, response_format={"type": "yaml"})  # type: ignore[arg-type]


def test_developer_role_text_parts_and_max_completion_tokens(client: OpenAI) -> None:
    parts = [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]
    with_parts = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "developer", "content": parts}, *HI],  # type: ignore[list-item]
        max_completion_tokens=6,
        temperature=0,
    )
    as_string = client.chat.completions.create(
        model=TINY, messages=[{"role": "system", "content": "Be brief."}, *HI], max_tokens=6, temperature=0
    )
    assert with_parts.choices[0].message.content == as_string.choices[0].message.content
    assert with_parts.usage is not None and as_string.usage is not None
    assert with_parts.usage.prompt_tokens == as_string.usage.prompt_tokens
    assert with_parts.usage.completion_tokens <= 6


def test_unsupported_optional_parameters_are_ignored(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=TINY,
        messages=HI,
        max_tokens=3,
        temperature=0,
        logit_bias={"1": 5},
        user="u",
        store=False,
        metadata={"k": "v"},
        parallel_tool_calls=True,
        service_tier="auto",
        reasoning_effort="low",
        modalities=["text"],
        prediction=None,
    )
    plain = client.chat.completions.create(model=TINY, messages=HI, max_tokens=3, temperature=0)
    assert reply.choices[0].message.content == plain.choices[0].message.content


def test_completions_echo_and_stream(client: OpenAI) -> None:
    reply = client.completions.create(model=TINY, prompt="Once", max_tokens=4, temperature=0, echo=True)
    plain = client.completions.create(model=TINY, prompt="Once", max_tokens=4, temperature=0)
    assert reply.choices[0].text == "Once" + plain.choices[0].text
    chunks = list(client.completions.create(model=TINY, prompt="Once", max_tokens=4, temperature=0, n=2, stream=True))
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == index]
        assert "".join(c.text for c in mine) == plain.choices[0].text
        assert [c.finish_reason for c in mine if c.finish_reason] == [plain.choices[0].finish_reason]
