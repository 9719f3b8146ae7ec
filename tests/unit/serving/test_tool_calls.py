"""``parse_tool_calls``: Hermes/Qwen ``<tool_call>`` blocks -> OpenAI tool calls."""

from __future__ import annotations

import json
import re

from openft.serving.tool_calls import parse_tool_calls

CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")


def test_one_call() -> None:
    content, calls = parse_tool_calls('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    assert content is None
    assert len(calls) == 1
    call = calls[0]
    assert CALL_ID.match(call["id"]) and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_two_calls_with_unique_ids_and_string_arguments() -> None:
    text = (
        '<tool_call>{"name": "a", "arguments": {"x": 1}}</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": "{\\"y\\": 2}"}\n</tool_call>'
    )
    content, calls = parse_tool_calls(text)
    assert content is None
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"x": 1}, {"y": 2}]
    assert calls[0]["id"] != calls[1]["id"]


def test_text_and_a_call() -> None:
    content, calls = parse_tool_calls('Let me check.\n<tool_call>{"name": "f", "arguments": {}}</tool_call>')
    assert content == "Let me check."
    assert len(calls) == 1 and calls[0]["function"]["arguments"] == "{}"


def test_malformed_blocks_stay_text() -> None:
    text = 'Hi <tool_call>{"name": "f", "arguments": </tool_call> and <tool_call>[1]</tool_call>'
    assert parse_tool_calls(text) == (text, [])
    mixed = '<tool_call>{oops}</tool_call><tool_call>{"name": "g"}</tool_call>'
    content, calls = parse_tool_calls(mixed)
    assert content == "<tool_call>{oops}</tool_call>"
    assert [c["function"]["name"] for c in calls] == ["g"]
    assert calls[0]["function"]["arguments"] == "{}"


def test_no_calls() -> None:
    assert parse_tool_calls("Just an answer.") == ("Just an answer.", [])
    assert parse_tool_calls("") == ("", [])
    assert parse_tool_calls("<tool_call> unterminated") == ("<tool_call> unterminated", [])
