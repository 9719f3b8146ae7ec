"""Responses items and request checks, without a server: input items as stored, conversations as chat
messages, output items of generated text, and the parameters openft refuses."""

from __future__ import annotations

from typing import Any

import pytest

from openft.errors import InvalidRequest
from openft.responses.items import chat_messages, check_unique_ids, input_items, output_items
from openft.responses.request import ResponseCreateRequest, chat_tool_choice, chat_tools

TOOL = {"type": "function", "name": "weather", "parameters": {"type": "object"}}


def test_string_input_is_one_user_message() -> None:
    (item,) = input_items("Hi")
    assert item["id"].startswith("msg_") and len(item["id"]) == 4 + 48
    assert item == {
        "id": item["id"],
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "Hi"}],
    }


def test_items_keep_their_ids_and_take_openai_shapes() -> None:
    items = input_items(
        [
            {"role": "system", "content": "Be brief."},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello"}],
                "id": "msg_a",
            },
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}", "id": "fc_1"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ]
    )
    assert [i["type"] for i in items] == ["message", "message", "function_call", "function_call_output"]
    assert items[1]["id"] == "msg_a" and items[1]["content"][0] == {
        "type": "output_text",
        "text": "Hello",
        "annotations": [],
        "logprobs": [],
    }
    assert items[2]["id"] == "fc_1" and items[3]["id"].startswith("fco_")


def test_a_conversation_becomes_chat_messages() -> None:
    items = input_items(
        [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "Weather"}, {"type": "input_text", "text": "?"}],
            },
            {"role": "assistant", "content": "Let me check."},
            {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": '{"day": 2}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "rain"}]},
        ]
    )
    messages = chat_messages(items, "Be brief.")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "user", "content": "Weather?"}
    assert messages[2]["role"] == "assistant" and messages[2]["content"] == "Let me check."
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["call_1", "call_2"]
    assert messages[2]["tool_calls"][1]["function"] == {"name": "weather", "arguments": '{"day": 2}'}
    assert messages[3:] == [
        {"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "name": "weather", "content": "rain"},
    ]
    assert chat_messages(items[2:3], None)[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [messages[2]["tool_calls"][0]],
    }


def test_an_output_without_its_call_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="call_9"):
        chat_messages(input_items([{"type": "function_call_output", "call_id": "call_9", "output": "x"}]), None)


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ([], "input"),
        (["text"], "input[0]"),
        ([{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}], "input[0].content[0]"),
        ([{"role": "user", "content": 3}], "input[0].content"),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0].type"),
        ([{"type": "web_search_call", "id": "ws_1"}], "input[0].type"),
        ([{"type": "function_call", "call_id": "c", "name": "f"}], "input[0].arguments"),
        ([{"role": "user", "content": "x", "id": 5}], "input[0].id"),
    ],
)
def test_unreadable_input_names_the_item(value: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        input_items(value)
    assert refused.value.param == param


def test_duplicate_item_ids_are_refused() -> None:
    context = input_items([{"role": "user", "content": "a", "id": "msg_1"}])
    with pytest.raises(InvalidRequest, match="Duplicate item found with id msg_1"):
        check_unique_ids(context, input_items([{"role": "user", "content": "b", "id": "msg_1"}]))


def test_output_items_split_tool_calls_from_text() -> None:
    text = 'Checking.<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
    message, call = output_items(text, incomplete=False, tools_requested=True)
    assert message["content"][0]["text"] == "Checking." and message["status"] == "completed"
    assert call["type"] == "function_call" and call["name"] == "weather" and call["id"].startswith("fc_")
    assert call["arguments"] == '{"city": "Paris"}' and call["call_id"].startswith("call_")
    only_calls = output_items(text.removeprefix("Checking."), incomplete=False, tools_requested=True)
    assert [i["type"] for i in only_calls] == ["function_call"]
    (plain,) = output_items(text, incomplete=True, tools_requested=False)
    assert plain["content"][0]["text"] == text and plain["status"] == "incomplete"


def test_tools_and_tool_choice_translate_to_chat() -> None:
    assert chat_tools([TOOL]) == [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    assert chat_tool_choice({"type": "function", "name": "weather"}, [TOOL]) == {
        "type": "function",
        "function": {"name": "weather"},
    }
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "weather"}]}
    assert chat_tool_choice(allowed, [TOOL]) == "required"
    with pytest.raises(InvalidRequest) as unknown:
        chat_tool_choice({"type": "function", "name": "other"}, [TOOL])
    assert unknown.value.param == "tool_choice.name"


def test_json_schema_format_reaches_chat_as_response_format() -> None:
    request = ResponseCreateRequest.model_validate(
        {
            "model": "m",
            "input": "x",
            "text": {"format": {"type": "json_schema", "name": "pick", "schema": {"type": "object"}, "strict": True}},
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 2,
        }
    )
    request.refuse_unsupported()
    fields = request.chat_fields([{"role": "user", "content": "x"}])
    assert fields["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "pick", "schema": {"type": "object"}, "strict": True},
    }
    assert fields["logprobs"] is True and fields["top_logprobs"] == 2
    assert request.text_format().wire()["schema"] == {"type": "object"}


def test_allowed_tools_narrow_what_the_model_is_shown() -> None:
    other = {"type": "function", "name": "time"}
    choice = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "time"}]}
    request = ResponseCreateRequest.model_validate(
        {"model": "m", "input": "x", "tools": [TOOL, other], "tool_choice": choice}
    )
    fields = request.chat_fields([{"role": "user", "content": "x"}])
    assert [t["function"]["name"] for t in fields["tools"]] == ["time"] and fields["tool_choice"] == "auto"


@pytest.mark.parametrize("name", [["weather"], {"a": 1}, None, 3])
def test_odd_tool_choice_names_are_400s(name: Any) -> None:
    with pytest.raises(InvalidRequest):
        chat_tool_choice({"type": "function", "name": name}, [TOOL])
    with pytest.raises(InvalidRequest):
        chat_tool_choice(
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": name}]}, [TOOL]
        )


def test_without_parallel_tool_calls_only_the_first_call_is_kept() -> None:
    block = '<tool_call>{"name": "weather", "arguments": {"day": %d}}</tool_call>'
    text = block % 1 + block % 2
    assert len(output_items(text, incomplete=False, tools_requested=True)) == 2
    (call,) = output_items(text, incomplete=False, tools_requested=True, parallel_calls=False)
    assert call["arguments"] == '{"day": 1}'


def test_truncation_drops_whole_turns_calls_included() -> None:
    from openft.responses.service import Turn

    items = input_items(
        [
            {"role": "user", "content": "one"},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "Ok."},
            {"role": "user", "content": "three"},
        ]
    )
    request = ResponseCreateRequest.model_validate({"model": "m", "input": "x", "instructions": "Be brief."})
    turn = Turn(id="resp_1", created_at=0, request=request, items=items, messages=chat_messages(items, "Be brief."))
    shorter = turn.without_oldest_turn()
    assert shorter is not None and shorter.items == items and shorter.start == 4
    assert [m["content"] for m in shorter.messages] == ["Be brief.", "two", "Ok.", "three"]
    shortest = shorter.without_oldest_turn()
    assert shortest is not None and [m["content"] for m in shortest.messages] == ["Be brief.", "three"]
    assert shortest.without_oldest_turn() is None
