"""Shaping of tool calls in /v1/chat/completions, with a fake backend that always calls a tool
(the random tiny model never does); the official client checks the wire format."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.api.app import create_app
from openft.api.inference import message_from_text
from openft.serving.backend import Choice, Generation, SamplingParams, ServedModel, StreamDelta
from openft.settings import Settings

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


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'openft.db'}")
    return create_app(settings, embedded_worker=False)


@pytest.fixture
def client(app: FastAPI) -> Iterator[OpenAI]:
    with TestClient(app) as http:
        yield OpenAI(base_url="http://testserver/v1", api_key="test", http_client=http, max_retries=0)


def test_message_from_text() -> None:
    message, finish = message_from_text(CALL_TEXT, "stop", True)
    assert finish == "tool_calls" and message["content"] == "Checking." and message["role"] == "assistant"
    (call,) = message["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert message_from_text(CALL_TEXT, "stop", False) == (
        {"role": "assistant", "content": CALL_TEXT, "refusal": None},
        "stop",
    )
    assert message_from_text("plain", "length", True)[1] == "length"


class _FakeBackend:
    """Answers every chat with ``CALL_TEXT``: a deterministic tool call from the model."""

    def chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        return Generation(choices=[Choice(text=CALL_TEXT, finish_reason="stop")], prompt_tokens=3, completion_tokens=9)

    def stream_chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamDelta]:
        pieces = [CALL_TEXT[:5], CALL_TEXT[5:20], CALL_TEXT[20:]]
        return iter(
            [*(StreamDelta(text=p) for p in pieces), StreamDelta(finish_reason="stop"), StreamDelta(usage=(3, 9))]
        )


def test_tool_call_round_trip(app: FastAPI, client: OpenAI) -> None:
    app.state.backend = _FakeBackend
    reply = client.chat.completions.create(model=TINY, messages=HI, tools=TOOLS)  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}

    # The call goes back to the model as the next turn's history.
    follow = [
        *HI,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    again = client.chat.completions.create(model=TINY, messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert again.choices[0].finish_reason == "tool_calls"

    # Without tools (or with tool_choice none) the text is returned as it was generated.
    plain = client.chat.completions.create(model=TINY, messages=HI)
    assert plain.choices[0].message.content == CALL_TEXT and not plain.choices[0].message.tool_calls
    none = client.chat.completions.create(model=TINY, messages=HI, tools=TOOLS, tool_choice="none")  # type: ignore[arg-type]
    assert none.choices[0].finish_reason == "stop" and none.choices[0].message.content == CALL_TEXT

    chunks = list(client.chat.completions.create(model=TINY, messages=HI, tools=TOOLS, stream=True))  # type: ignore[arg-type]
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(d.content or "" for d in deltas) == "Checking."
    streamed = [t for d in deltas for t in (d.tool_calls or [])]
    assert len(streamed) == 1 and streamed[0].index == 0 and streamed[0].id and streamed[0].id.startswith("call_")
    assert streamed[0].function is not None and streamed[0].function.name == "get_weather"
    assert json.loads(streamed[0].function.arguments or "") == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["tool_calls"]
