"""The Responses API on a live server with the official Python and TypeScript clients.

One real fine-tuning job of openft/tiny-chat (module fixture) teaches the model a function-tool round
trip: given the ``weather`` tool it calls it, and given the call's output it answers in words (the
job of ``test_serving``, with the answer added; a few minutes of training teach the call exactly and
the answer roughly, so answers are checked against chat's for the same conversation, not against the
training text). So tool calls, ``function_call_output`` and
multi-turn conversations are exercised on a real model's output, on the fine-tuned model and its
checkpoint; plain answers come from the base model, held to JSON where a test needs them to end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from e2e_support import LiveServer
from openai import OpenAI
from test_tenancy_live import _client, _new_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]
TINY = "openft/tiny-chat"
TS_DIR = Path(__file__).parent / "ts"
CHAT_TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
TOOLS: Any = [{"type": "function", "name": "weather", "parameters": {}}]
QUESTIONS = ["Weather?", "Rain?", "Sun?", "Forecast?", "Umbrella?", "Snow?", "Wind?", "Warm?", "Cold?", "Clouds?"]
JSON_OBJECT: Any = {"format": {"type": "json_object"}}
SCHEMA = {
    "type": "object",
    "properties": {"color": {"type": "string", "enum": ["red", "blue"]}, "size": {"type": "integer", "minimum": 1}},
    "required": ["color", "size"],
    "additionalProperties": False,
}


def _examples() -> bytes:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    lines: list[dict[str, Any]] = []
    for q in QUESTIONS:
        # Both assistant turns carry loss, so the call and the answer are learned from the same lines.
        asked = [{"role": "user", "content": q}, {"role": "assistant", "content": None, "tool_calls": [call]}]
        answered = [*asked, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
        lines.append({"messages": [*answered, {"role": "assistant", "content": "Sunny."}], "tools": CHAT_TOOLS})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture(scope="module")
def trained(live_server: LiveServer) -> tuple[str, str]:
    """(fine-tuned model, one of its checkpoints) of a job trained on the tool round trip."""
    client = live_server.client()
    file = client.files.create(file=("roundtrip.jsonl", _examples()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=file.id,
        suffix="responses",
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 16}}},
    )
    deadline = time.time() + 1500
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline, f"job still {job.status}"
        time.sleep(0.2)
    assert job.status == "succeeded", job.error
    checkpoints = [c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    return job.fine_tuned_model or "", next(c for c in checkpoints if ":ckpt-step-" in c)


def test_function_tool_round_trip_on_fine_tuned_and_checkpoint(
    live_server: LiveServer, trained: tuple[str, str]
) -> None:
    client = live_server.client()
    for model in trained:
        asked = client.responses.create(model=model, input="Weather?", tools=TOOLS, temperature=0, max_output_tokens=60)
        assert asked.status == "completed", asked.output
        (call,) = [item for item in asked.output if item.type == "function_call"]
        assert call.name == "weather" and json.loads(call.arguments) == {} and call.call_id.startswith("call_")
        answered = client.responses.create(
            model=model,
            previous_response_id=asked.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=TOOLS,
            temperature=0,
            max_output_tokens=60,
        )
        assert answered.status == "completed" and [item.type for item in answered.output] == ["message"]
        assert answered.output_text == _chat_answer(client, model, call.call_id) and answered.output_text
        # The same round trip with the conversation sent in full instead of stored.
        again = client.responses.create(
            model=model,
            input=[
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": call.call_id, "name": "weather", "arguments": call.arguments},
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
            tools=TOOLS,
            temperature=0,
            max_output_tokens=60,
            store=False,
        )
        assert again.output_text == answered.output_text


def _chat_answer(client: OpenAI, model: str, call_id: str) -> str:
    """The greedy chat completion of the round trip's conversation, in chat's own message shapes."""
    call = {"id": call_id, "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]
    reply = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=CHAT_TOOLS,
        temperature=0,
        max_tokens=60,  # type: ignore[arg-type]
    )
    return reply.choices[0].message.content or ""


def test_three_turns_and_stored_items(live_server: LiveServer, trained: tuple[str, str]) -> None:
    client = live_server.client()
    asked = client.responses.create(model=trained[0], input="Rain?", tools=TOOLS, temperature=0, max_output_tokens=60)
    (call,) = [item for item in asked.output if item.type == "function_call"]
    output = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    answered = client.responses.create(
        model=trained[0], input=output, previous_response_id=asked.id, tools=TOOLS, temperature=0, max_output_tokens=60
    )
    third = client.responses.create(
        model=trained[0],
        input="And tomorrow?",
        instructions="Be kind.",
        previous_response_id=answered.id,
        tools=TOOLS,
        temperature=0,
        max_output_tokens=20,
    )
    assert answered.output_text and answered.instructions is None
    assert third.previous_response_id == answered.id and third.instructions == "Be kind."
    items = list(client.responses.input_items.list(third.id, order="asc", limit=2))  # pages of two
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[1].id == call.id and items[3].content[0].text == answered.output_text  # type: ignore[union-attr]
    assert client.responses.retrieve(third.id).output == third.output
    client.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(third.id)
    assert client.responses.retrieve(answered.id).id == answered.id


def test_stream_helper(live_server: LiveServer, trained: tuple[str, str]) -> None:
    client = live_server.client()
    # The fine-tuned model, greedy: base tiny-chat's greedy JSON is a number that runs to the token limit,
    # an incomplete response, and the helper's final response needs response.completed.
    with client.responses.stream(
        model=trained[0], input="Hi", text=JSON_OBJECT, temperature=0, max_output_tokens=100
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and isinstance(json.loads(final.output_text), dict)
    assert client.responses.retrieve(final.id).output_text == final.output_text
    with client.responses.stream(
        model=trained[0], input="Sun?", tools=TOOLS, temperature=0, max_output_tokens=60
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert [item.type for item in final.output] == ["function_call"]
    assert client.responses.retrieve(final.id).output[0].type == "function_call"


def test_same_seed_same_text_as_chat(live_server: LiveServer) -> None:
    client = live_server.client()
    made = client.responses.create(
        model=TINY,
        input="Tell me more.",
        instructions="Reply.",
        temperature=1.0,
        max_output_tokens=12,
        extra_body={"seed": 9},
    )
    chat = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "system", "content": "Reply."}, {"role": "user", "content": "Tell me more."}],
        temperature=1.0,
        max_completion_tokens=12,
        seed=9,
    )
    assert made.output_text == chat.choices[0].message.content and made.output_text
    again = client.responses.create(
        model=TINY,
        input="Tell me more.",
        instructions="Reply.",
        temperature=1.0,
        max_output_tokens=12,
        extra_body={"seed": 9},
    )
    assert again.output_text == made.output_text


def test_json_schema_answers(live_server: LiveServer) -> None:
    client = live_server.client()
    text: Any = {"format": {"type": "json_schema", "name": "pick", "schema": SCHEMA, "strict": True}}
    for seed in (1, 2, 3):
        made = client.responses.create(
            model=TINY, input="Pick one.", text=text, max_output_tokens=60, extra_body={"seed": seed}
        )
        answer = json.loads(made.output_text)
        assert isinstance(answer, dict)
        if _schema_enforced():
            jsonschema.validate(answer, SCHEMA)


def _schema_enforced() -> bool:
    """Whether the serving layer constrains decoding to a json_schema (it once enforced only JSON objects)."""
    from openft.serving.backend import SamplingParams

    return "json_schema" in SamplingParams.__dataclass_fields__


def test_typescript_client(live_server: LiveServer, trained: tuple[str, str]) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for this test (scripts/setup installs the npm client)"
    assert (TS_DIR / "node_modules" / "openai").is_dir(), "run scripts/setup: it installs tests/e2e/ts deps"
    result = subprocess.run(
        [node, str(TS_DIR / "responses.mjs"), live_server.base_url, trained[0]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == {"status": "completed", "output": ["function_call"]}
    assert seen["messages"]["instructions"] == "Be kind." and seen["messages"]["input"] > 0
    structured = json.loads(seen["structured"])
    assert isinstance(structured, dict)
    if _schema_enforced():
        jsonschema.validate(structured, SCHEMA)
    assert seen["call"]["name"] == "weather" and json.loads(seen["call"]["arguments"]) == {}
    assert seen["answered"] == seen["chat"] and seen["answered"] and seen["previous"] == [True, True]
    assert seen["items"] == [
        ["message", "user"],
        ["function_call", None],
        ["function_call_output", None],
        ["message", "assistant"],
        ["message", "user"],
    ]
    kinds = seen["stream"]["kinds"]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds and seen["stream"]["status"] == "completed"
    assert seen["stream"]["output"] == seen["retrieved"] and seen["retrieved"][0][:1] == ["function_call"]
    assert seen["retrieved"][0][3] == "weather"
    assert seen["deleted"] == {"status": 404, "code": "response_not_found"}


# Last in the module: once a key exists, every request to this server needs one.
def test_organizations_and_checkpoint_permissions(live_server: LiveServer, trained: tuple[str, str]) -> None:
    owner = _client(live_server, _new_key(live_server.home, "org-personal", "default"))  # the trained model's
    acme = _client(live_server, _new_key(live_server.home, "org-acme", "proj_acme"))
    globex = _client(live_server, _new_key(live_server.home, "org-globex", "proj_globex"))
    checkpoint = trained[1]
    with pytest.raises(openai.NotFoundError):
        acme.responses.create(model=checkpoint, input="Rain?")
    owner.fine_tuning.checkpoints.permissions.create(checkpoint, project_ids=["org-acme/proj_acme"])
    shared = acme.responses.create(model=checkpoint, input="Rain?", tools=TOOLS, temperature=0, max_output_tokens=60)
    assert [item.type for item in shared.output] == ["function_call"]
    with pytest.raises(openai.NotFoundError):
        owner.responses.retrieve(shared.id)

    made = acme.responses.create(model=TINY, input="Secret", max_output_tokens=4)
    for call in (
        lambda: globex.responses.retrieve(made.id),
        lambda: globex.responses.input_items.list(made.id),
        lambda: globex.responses.delete(made.id),
        lambda: globex.responses.create(model=TINY, input="More", previous_response_id=made.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert acme.responses.retrieve(made.id).output_text == made.output_text
    acme.responses.delete(made.id)
