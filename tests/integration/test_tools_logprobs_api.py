"""Tool calls and logprobs on /v1/chat/completions through the official client."""

from __future__ import annotations

import pytest
from openai import OpenAI

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
HI = [{"role": "user", "content": "Say hi."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CALL_TEXT = 'Checking.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


def test_tools_request_with_the_tiny_model(client: OpenAI) -> None:
    reply = client.chat.completions.create(model=TINY, messages=HI, tools=TOOLS, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.role == "assistant"
    if choice.finish_reason == "tool_calls":
        assert choice.message.tool_calls
    else:
        assert choice.message.content is not None and not choice.message.tool_calls
    chunks = list(
        client.chat.completions.create(
            model=TINY,
            messages=HI,
            tools=TOOLS,
            max_tokens=8,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == [choice.finish_reason]


def test_logprobs(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=TINY, messages=HI, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    content = choice.logprobs.content
    assert reply.usage is not None
    eos = 1 if choice.finish_reason == "stop" else 0
    assert len(content) == reply.usage.completion_tokens - eos
    assert "".join(t.token for t in content) == choice.message.content
    for item in content:
        assert item.logprob <= 0 and item.bytes == list(item.token.encode("utf-8"))
        assert len(item.top_logprobs) == 3
        values = [t.logprob for t in item.top_logprobs]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert item.top_logprobs[0].token == item.token  # greedy picks the most likely token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob)

    plain = client.chat.completions.create(model=TINY, messages=HI, max_tokens=5, temperature=0)
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == choice.message.content
    no_top = client.chat.completions.create(model=TINY, messages=HI, max_tokens=3, temperature=0, logprobs=True)
    assert no_top.choices[0].logprobs is not None
    assert all(t.top_logprobs == [] for t in no_top.choices[0].logprobs.content or [])
    # Streamed: each content chunk carries the entries of its tokens; together they are the same entries.
    chunks = list(
        client.chat.completions.create(
            model=TINY, messages=HI, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3, stream=True
        )
    )
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
    assert all(len(t.top_logprobs) == 3 for t in streamed)
    for c in chunks:
        if c.choices and c.choices[0].delta.content:
            assert c.choices[0].logprobs is not None
            assert "".join(t.token for t in c.choices[0].logprobs.content or []) == c.choices[0].delta.content


def test_completions_logprobs_and_stream(client: OpenAI) -> None:
    reply = client.completions.create(model=TINY, prompt="Once upon", max_tokens=6, temperature=0, logprobs=2)
    choice = reply.choices[0]
    assert choice.logprobs is not None and reply.usage is not None
    assert "".join(choice.logprobs.tokens or []) == choice.text
    assert len(choice.logprobs.token_logprobs or []) == len(choice.logprobs.tokens or [])
    assert all(len(top) == 2 for top in choice.logprobs.top_logprobs or [])
    assert (choice.logprobs.text_offset or [None])[0] == len("Once upon")

    chunks = list(
        client.completions.create(
            model=TINY,
            prompt="Once upon",
            max_tokens=6,
            temperature=0,
            logprobs=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, usage = chunks
    assert {c.object for c in chunks} == {"text_completion"} and len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in body) == choice.text
    assert sum(1 for c in body if c.choices[0].text) >= 2  # sent as generated, not as one block
    assert [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason] == [choice.finish_reason]
    tokens = [t for c in body for t in (c.choices[0].logprobs.tokens or [] if c.choices[0].logprobs else [])]
    assert tokens == choice.logprobs.tokens
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == reply.usage.completion_tokens
