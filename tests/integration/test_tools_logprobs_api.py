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
    # Streamed: accepted and ignored.
    chunks = list(
        client.chat.completions.create(
            model=TINY, messages=HI, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2, stream=True
        )
    )
    assert all(c.choices[0].logprobs is None for c in chunks)
