"""Server-sent events of a streamed response (``stream: true`` on ``POST /v1/responses``).

OpenAI's sequence, each event numbered by ``sequence_number``: ``response.created``,
``response.in_progress``; for the message ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``; for each function call ``response.output_item.added``,
``response.function_call_arguments.delta`` and ``.done``, ``response.output_item.done``; then
``response.completed`` (``response.incomplete`` when ``max_output_tokens`` cut the answer short).

Text is sent as the backend yields it. With function tools offered the answer is held back until it
ends, as a streamed chat answer with tools is, because a ``<tool_call>`` block is only known whole.
A failure after the stream started is an ``error`` event followed by ``response.failed``. Delta events
carry OpenAI's ``obfuscation`` padding unless ``stream_options.include_obfuscation`` is false.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from openft.api.generations import GenerationThreads
from openft.api.inference_streams import backend_deltas
from openft.responses.items import new_item_id, output_items, output_text_part
from openft.responses.service import ResponseService, Turn, response_object, usage
from openft.serving.backend import StreamDelta
from openft.tenancy import Principal


class _Events:
    """Numbers and renders the events of one stream."""

    def __init__(self, obfuscate: bool):
        self._sequence = itertools.count()
        self._obfuscate = obfuscate

    def __call__(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": next(self._sequence), **fields}
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"

    def delta(self, kind: str, **fields: Any) -> str:
        if self._obfuscate:  # pads deltas to varying sizes, so their lengths do not tell the tokens
            fields["obfuscation"] = secrets.token_urlsafe(12)[: 1 + secrets.randbelow(16)]
        return self(kind, **fields)


def _message_start(events: _Events, item: dict[str, Any], index: int) -> Iterator[str]:
    yield events(
        "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
    )
    part = output_text_part("")
    yield events("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)


def _message_end(events: _Events, item: dict[str, Any], index: int) -> Iterator[str]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    yield events("response.output_text.done", **where, text=part["text"], logprobs=part["logprobs"])
    yield events("response.content_part.done", **where, part=part)
    yield events("response.output_item.done", output_index=index, item=item)


def _whole_item(events: _Events, item: dict[str, Any], index: int) -> Iterator[str]:
    """The events of an output item known whole (an answer held back while tools were offered)."""
    if item["type"] == "message":
        yield from _message_start(events, item, index)
        part = item["content"][0]
        if part["text"]:
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            yield events.delta("response.output_text.delta", **where, delta=part["text"], logprobs=part["logprobs"])
        yield from _message_end(events, item, index)
        return
    yield events(
        "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "arguments": ""}
    )
    where = {"item_id": item["id"], "output_index": index}
    yield events.delta("response.function_call_arguments.delta", **where, delta=item["arguments"])
    yield events("response.function_call_arguments.done", **where, arguments=item["arguments"])
    yield events("response.output_item.done", output_index=index, item=item)


async def response_events(
    request: Request,
    threads: GenerationThreads,
    deltas: Iterator[StreamDelta],
    cancel: threading.Event,
    *,
    service: ResponseService,
    principal: Principal,
    turn: Turn,
    tools_requested: bool,
) -> AsyncIterator[str]:
    """The events of ``turn``'s response as the backend's ``deltas`` arrive; the finished response is
    stored (unless ``store`` is false) before ``response.completed`` is sent."""
    options = turn.request.stream_options
    events = _Events(obfuscate=options is None or options.include_obfuscation is not False)
    errors: list[str] = []
    started = response_object(turn, status="in_progress", output=[], token_usage=None)
    message = {"id": new_item_id("msg"), "type": "message", "role": "assistant", "status": "in_progress"}
    texts: list[str] = []
    entries: list[dict[str, Any]] = []
    finish, tokens = "stop", (0, 0)
    try:
        yield events("response.created", response=started)
        yield events("response.in_progress", response=started)
        if not tools_requested:
            for event in _message_start(events, message, 0):
                yield event
        async for item in backend_deltas(request, threads, deltas, errors.append):
            if item.usage is not None:
                tokens = item.usage
                continue
            texts.append(item.text)
            entries.extend(item.logprobs or [])
            if not tools_requested and (item.text or item.logprobs):
                where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
                yield events.delta("response.output_text.delta", **where, delta=item.text, logprobs=item.logprobs or [])
            finish = item.finish_reason or finish
        if errors:
            yield events("error", code="server_error", message=errors[0], param=None)
            failed = await run_in_threadpool(service.fail, principal, turn, errors[0])
            yield events("response.failed", response=failed)
            return
        if await request.is_disconnected():
            return
        text, cut = "".join(texts), finish == "length"
        if tools_requested:
            parallel = turn.request.parallel_tool_calls is not False
            output = output_items(text, incomplete=cut, tools_requested=True, logprobs=entries, parallel_calls=parallel)
            for index, out in enumerate(output):
                for event in _whole_item(events, out, index):
                    yield event
        else:
            done = {
                **message,
                "status": "incomplete" if cut else "completed",
                "content": [output_text_part(text, entries)],
            }
            output = [done]
            for event in _message_end(events, done, 0):
                yield event
        body = await run_in_threadpool(service.complete, principal, turn, output, usage(*tokens))
        yield events("response.completed" if body["status"] == "completed" else "response.incomplete", response=body)
    finally:
        cancel.set()  # a no-op once generation has ended
