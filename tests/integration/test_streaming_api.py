"""Streamed /v1/chat/completions through the official client: chunks, stop strings, usage."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
HI = [{"role": "user", "content": "Say hi."}]


def _stream(client: OpenAI, **params: Any) -> list[Any]:
    stream = client.chat.completions.create(
        model=TINY, messages=HI, stream=True, stream_options={"include_usage": True}, **params
    )
    return list(stream)


@pytest.mark.parametrize(
    "params",
    [
        {"max_tokens": 12, "temperature": 0},
        {"max_tokens": 40, "temperature": 1.0, "seed": 5},  # seeded sampling: the same text either way
    ],
)
def test_stream_matches_the_non_streamed_answer(client: OpenAI, params: dict[str, Any]) -> None:
    reply = client.chat.completions.create(model=TINY, messages=HI, **params)
    chunks = _stream(client, **params)

    assert len(chunks) >= 5  # role, several content pieces, finish, usage
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-") and chunks[0].model == TINY
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    *body, usage = chunks
    assert all(c.usage is None and len(c.choices) == 1 for c in body)
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert text == reply.choices[0].message.content
    assert sum(1 for c in body if c.choices[0].delta.content) >= 2  # sent token by token
    assert [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason] == [reply.choices[0].finish_reason]
    assert body[-1].choices[0].finish_reason is not None
    assert usage.choices == [] and usage.usage is not None and reply.usage is not None
    assert usage.usage.prompt_tokens == reply.usage.prompt_tokens
    assert usage.usage.completion_tokens == reply.usage.completion_tokens
    assert usage.usage.total_tokens == reply.usage.total_tokens


def test_stream_stops_at_a_stop_string(client: OpenAI) -> None:
    sampled: dict[str, Any] = {"max_tokens": 60, "temperature": 1.0, "seed": 11}
    full = client.chat.completions.create(model=TINY, messages=HI, **sampled).choices[0].message.content or ""
    assert len(full) > 20
    stop = full[12:15]
    reply = client.chat.completions.create(model=TINY, messages=HI, stop=[stop, "never-there"], **sampled)
    chunks = _stream(client, stop=[stop, "never-there"], **sampled)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content == full[: full.find(stop)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and reply.usage is not None
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_stream_without_usage_and_with_two_choices(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model=TINY, messages=HI, stream=True, max_tokens=4, temperature=0, n=2)
    )
    assert all(c.usage is None and c.choices for c in chunks)
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert [c.finish_reason for c in mine if c.finish_reason] == ["length"]


def test_stream_rejects_bad_requests_up_front(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=TINY, messages=HI, stream=True, max_tokens=100_000)
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HI, stream=True)
