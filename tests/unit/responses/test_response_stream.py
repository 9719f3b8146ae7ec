"""api/response_streams.py: the event sequence of a streamed response, from a scripted backend stream,
stored in the in-memory store (the SQL one passes the same contract suite)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anyio

from openft.api.generations import GenerationThreads
from openft.api.response_streams import response_events
from openft.responses.request import ResponseCreateRequest
from openft.responses.service import ResponseService
from openft.serving.backend import StreamDelta
from openft.store import InMemoryStore
from openft.tenancy import Principal

ME = Principal("org-me")


class _Connected:
    """The part of a starlette Request the stream reads: a client that stays."""

    async def is_disconnected(self) -> bool:
        return False


def _service() -> ResponseService:
    return ResponseService(InMemoryStore().responses)


def _stream(service: ResponseService, deltas: Iterator[StreamDelta], **request: Any) -> list[dict[str, Any]]:
    body = ResponseCreateRequest.model_validate({"model": "m", "input": "Hi", **request})
    turn = service.begin(ME, body)

    async def collect() -> list[str]:
        events = response_events(
            _Connected(),  # type: ignore[arg-type]  # only is_disconnected is read
            GenerationThreads(2),
            deltas,
            threading.Event(),
            service=service,
            principal=ME,
            turn=turn,
            tools_requested=bool(body.tools),
        )
        return [chunk async for chunk in events]

    chunks = anyio.run(collect)
    parsed = []
    for chunk in chunks:
        head, data = chunk.strip().split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        parsed.append(event)
    assert [e["sequence_number"] for e in parsed] == list(range(len(parsed)))
    return parsed


def test_text_is_streamed_and_the_response_stored() -> None:
    service = _service()
    deltas = iter([StreamDelta(text="Hel"), StreamDelta(text="lo", finish_reason="stop"), StreamDelta(usage=(7, 3))])
    events = _stream(service, deltas)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(e["obfuscation"] for e in events if e["type"] == "response.output_text.delta")
    assert events[6]["text"] == "Hello" and events[8]["item"]["status"] == "completed"
    final = events[-1]["response"]
    assert final["usage"]["input_tokens"] == 7 and final["usage"]["output_tokens"] == 3
    assert final["output"][0]["id"] == events[2]["item"]["id"]
    assert service.retrieve(ME, final["id"]) == final


def test_a_cut_answer_is_incomplete_and_obfuscation_can_be_off() -> None:
    deltas = iter([StreamDelta(text="Hel", finish_reason="length"), StreamDelta(usage=(7, 1))])
    events = _stream(_service(), deltas, stream_options={"include_obfuscation": False}, max_output_tokens=1)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert not any("obfuscation" in e for e in events)


def test_tool_calls_are_sent_whole_when_the_answer_ends() -> None:
    text = 'Ok.<tool_call>{"name": "weather", "arguments": {"city": "Oslo"}}</tool_call>'
    deltas = iter(
        [StreamDelta(text=text[:10]), StreamDelta(text=text[10:], finish_reason="stop"), StreamDelta(usage=(9, 20))]
    )
    events = _stream(_service(), deltas, tools=[{"type": "function", "name": "weather"}])
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[4]["delta"] == "Ok." and events[9]["delta"] == '{"city": "Oslo"}'
    assert events[8]["item"]["arguments"] == "" and events[11]["item"]["name"] == "weather"


def test_a_failure_mid_stream_is_an_error_then_a_failed_response() -> None:
    def broken() -> Iterator[StreamDelta]:
        yield StreamDelta(text="Hi")
        raise RuntimeError("engine fell over")

    service = _service()
    events = _stream(service, broken())
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-2]["message"] == "The server had an error while generating."  # no internals leak
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert service.retrieve(ME, failed["id"])["status"] == "failed"
