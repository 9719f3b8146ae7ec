"""/v1/responses through the official client on SQLite and PostgreSQL, answered by the real tiny-chat model:
create (string and item input, instructions, seeds, JSON formats, function call items), streaming,
conversations by previous_response_id, retrieve, input_items, delete, organizations, and the 400s of
what openft cannot do."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from fastapi import FastAPI
from openai import OpenAI
from starlette.testclient import TestClient

from openft.serving.backend import SamplingParams
from openft.store.keys import KeyStore

pytestmark = pytest.mark.integration
TINY = "openft/tiny-chat"
SEED = {"seed": 5}
JSON_OBJECT: Any = {"format": {"type": "json_object"}}


def _client(http: TestClient, key: str) -> OpenAI:
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


def test_string_input_is_answered_stored_and_deleted(client: OpenAI) -> None:
    made = client.responses.create(model=TINY, input="Hello", max_output_tokens=6, metadata={"k": "v"}, extra_body=SEED)
    assert made.id.startswith("resp_") and made.object == "response" and made.model == TINY
    assert made.status in ("completed", "incomplete") and made.error is None
    message = made.output[0]
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text" and made.output_text == message.content[0].text
    assert made.usage is not None and made.usage.input_tokens > 0 and 0 < made.usage.output_tokens <= 7
    assert made.usage.total_tokens == made.usage.input_tokens + made.usage.output_tokens
    assert made.usage.output_tokens_details.reasoning_tokens == 0
    if made.status == "incomplete":
        assert made.incomplete_details is not None and made.incomplete_details.reason == "max_output_tokens"
    assert made.metadata == {"k": "v"} and made.store is True and made.max_output_tokens == 6

    again = client.responses.retrieve(made.id)
    assert again.model_dump() == made.model_dump()
    items = client.responses.input_items.list(made.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
    assert items.data[0].content[0].text == "Hello"  # type: ignore[union-attr]

    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.retrieve(made.id)
    assert gone.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)


def test_same_seed_same_text_as_chat_completions(client: OpenAI) -> None:
    items: Any = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "input_text", "text": "Name a color."}]},
    ]
    made = client.responses.create(
        model=TINY, input=items, instructions="You are terse.", max_output_tokens=8, temperature=0.9, extra_body=SEED
    )
    chat = client.chat.completions.create(
        model=TINY,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": "Name a color."},
        ],
        max_completion_tokens=8,
        temperature=0.9,
        seed=5,
    )
    assert made.output_text == chat.choices[0].message.content
    assert made.usage is not None and chat.usage is not None
    assert made.usage.input_tokens == chat.usage.prompt_tokens
    assert made.instructions == "You are terse." and made.temperature == 0.9


def test_previous_response_id_continues_the_conversation(client: OpenAI) -> None:
    first = client.responses.create(model=TINY, input="One", instructions="Only here.", max_output_tokens=3)
    second = client.responses.create(model=TINY, input="Two", previous_response_id=first.id, max_output_tokens=3)
    third = client.responses.create(model=TINY, input="Three", previous_response_id=second.id, max_output_tokens=3)
    assert second.previous_response_id == first.id and second.instructions is None
    items = list(client.responses.input_items.list(third.id, order="asc"))
    texts = [(i.role, i.content[0].text) for i in items]  # type: ignore[union-attr]
    assert texts == [
        ("user", "One"),
        ("assistant", first.output_text),
        ("user", "Two"),
        ("assistant", second.output_text),
        ("user", "Three"),
    ]
    assert items[1].id == first.output[0].id
    # The third turn's prompt holds the whole conversation (and not the first turn's instructions).
    assert third.usage is not None and second.usage is not None and third.usage.input_tokens > second.usage.input_tokens
    page = client.responses.input_items.list(third.id, limit=2)
    assert [i.content[0].text for i in page.data] == ["Three", second.output_text]  # type: ignore[union-attr]
    assert page.has_more and page.last_id == items[3].id
    # Deleting an earlier turn leaves later ones whole; continuing from a deleted one is a 404.
    client.responses.delete(first.id)
    assert len(list(client.responses.input_items.list(third.id))) == 5
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model=TINY, input="x", previous_response_id=first.id)
    assert missing.value.param == "previous_response_id"


def test_function_call_items_reach_the_model_and_the_conversation(client: OpenAI) -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    call = {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    items: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        call,
        {"type": "function_call_output", "call_id": "call_abc", "output": '{"temp": 21}'},
    ]
    made = client.responses.create(model=TINY, input=items, tools=tools, max_output_tokens=4, extra_body=SEED)
    assert made.tools[0].name == "get_weather" and made.tools[0].type == "function"  # type: ignore[union-attr]
    kinds = [i.type for i in client.responses.input_items.list(made.id, order="asc")]
    assert kinds == ["message", "function_call", "function_call_output"]
    plain = client.responses.create(model=TINY, input=items[:1], tools=tools, max_output_tokens=4, extra_body=SEED)
    assert made.usage is not None and plain.usage is not None
    assert made.usage.input_tokens > plain.usage.input_tokens  # the call and its output are in the prompt

    with pytest.raises(openai.BadRequestError) as orphan:
        client.responses.create(model=TINY, input=items[2:], tools=tools)
    assert "call_abc" in orphan.value.message


def test_json_formats_give_json(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "blue"]}, "n": {"type": "integer"}},
        "required": ["color", "n"],
        "additionalProperties": False,
    }
    text: Any = {"format": {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}}
    made = client.responses.create(model=TINY, input="Pick.", text=text, max_output_tokens=60, extra_body=SEED)
    assert made.text is not None and made.text.format is not None and made.text.format.type == "json_schema"
    answer = json.loads(made.output_text)  # the constraint closes the JSON even when max_output_tokens cuts it
    assert isinstance(answer, dict)
    if "json_schema" in SamplingParams.__dataclass_fields__:  # the serving layer enforces schemas
        jsonschema.validate(answer, schema)
    plain = client.responses.create(model=TINY, input="Hi", text=JSON_OBJECT, max_output_tokens=60, extra_body=SEED)
    assert isinstance(json.loads(plain.output_text), dict)


def test_stream_helper_gets_the_stored_response(client: OpenAI) -> None:
    made = client.responses.create(model=TINY, input="Hi", text=JSON_OBJECT, max_output_tokens=40, extra_body=SEED)
    with client.responses.stream(
        model=TINY, input="Hi", text=JSON_OBJECT, max_output_tokens=40, extra_body=SEED
    ) as stream:
        events = list(stream)
        final = stream.get_final_response() if events[-1].type == "response.completed" else None
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed" if made.status == "completed" else "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == made.output_text
    response_id = events[0].response.id  # type: ignore[union-attr]
    assert client.responses.retrieve(response_id).output_text == made.output_text
    if final is not None:
        assert final.id == response_id and final.output_text == made.output_text


def test_store_false_and_max_output_tokens(client: OpenAI) -> None:
    made = client.responses.create(model=TINY, input="Hello", store=False, max_output_tokens=1)
    assert made.store is False and made.status == "incomplete"
    assert made.incomplete_details is not None and made.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


def test_truncation_auto_drops_the_oldest_turns(client: OpenAI) -> None:
    # tiny-chat reads 1024 tokens, one per byte: two turns of 600 bytes do not fit together.
    first = client.responses.create(model=TINY, input="a" * 600, max_output_tokens=2)
    later = "b" * 600
    with pytest.raises(openai.BadRequestError) as too_long:
        client.responses.create(model=TINY, input=later, previous_response_id=first.id, max_output_tokens=2)
    assert too_long.value.code == "context_length_exceeded"
    made = client.responses.create(
        model=TINY, input=later, previous_response_id=first.id, max_output_tokens=2, truncation="auto"
    )
    alone = client.responses.create(model=TINY, input=later, max_output_tokens=2)
    assert made.truncation == "auto" and made.usage is not None and alone.usage is not None
    assert made.usage.input_tokens == alone.usage.input_tokens  # the first turn was dropped whole
    assert len(list(client.responses.input_items.list(made.id))) == 3  # and is still part of the conversation
    with pytest.raises(openai.BadRequestError):  # nothing left to drop
        client.responses.create(model=TINY, input="c" * 1100, truncation="auto")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"background": True}, "background"),
        ({"include": ["file_search_call.results"]}, "include[0]"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        ({"input": [{"role": "critic", "content": "x"}]}, "input[0].role"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"temperature": 3}, "temperature"),
    ],
)
def test_what_openft_cannot_do_is_a_400_naming_the_param(http: TestClient, extra: dict[str, Any], param: str) -> None:
    body = {"model": TINY, "input": "Hi", **extra}
    answer = http.post("/v1/responses", json=body, headers={"Authorization": "Bearer x"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_unknown_model_and_response_are_404(client: OpenAI, http: TestClient) -> None:
    with pytest.raises(openai.NotFoundError) as model:
        client.responses.create(model="no/such-model", input="Hi")
    assert model.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_missing")
    # A retrieve that asks for a stream is refused, not answered as JSON.
    answer = http.get("/v1/responses/resp_missing?stream=true", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "stream"


def test_another_organizations_response_is_404(app: FastAPI, http: TestClient) -> None:
    keys: KeyStore = app.state.keys
    acme = _client(http, keys.create("org-acme", "proj_acme")[1])
    globex = _client(http, keys.create("org-globex", "proj_globex")[1])
    made = acme.responses.create(model=TINY, input="Secret", max_output_tokens=2)
    for call in (
        lambda: globex.responses.retrieve(made.id),
        lambda: globex.responses.input_items.list(made.id),
        lambda: globex.responses.delete(made.id),
        lambda: globex.responses.create(model=TINY, input="x", previous_response_id=made.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert acme.responses.retrieve(made.id).id == made.id
