"""/v1/chat/completions and /v1/completions over the serving backend (torch is imported on first use).

Chat tool calls: with ``tools`` in the request (and ``tool_choice`` not ``"none"``), ``<tool_call>{json}
</tool_call>`` blocks in the generated text become the message's ``tool_calls`` and ``finish_reason`` is
``tool_calls``. A streamed answer with tools is buffered per choice and sent whole when that choice ends
(content, then one ``delta.tool_calls`` chunk per call). ``logprobs``/``top_logprobs`` are returned on
non-streamed chat completions; a streamed request accepts and ignores them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from openft import ids
from openft.api.deps import PrincipalDep, RegistryDep
from openft.errors import InvalidRequest, OpenFTError
from openft.serving.backend import Generation, SamplingParams, StreamDelta
from openft.serving.tool_calls import parse_tool_calls

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["inference"])


class _SamplingFields(BaseModel):
    # Optional parameters this server does not use (logit_bias, user, store...) are accepted and ignored.
    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None

    def sampling(self, max_tokens: int | None = None) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise InvalidRequest("stop can have at most 4 sequences.", param="stop")
        return SamplingParams(
            max_tokens=max_tokens or self.max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            n=self.n or 1,
            stop=stop,
            seed=self.seed,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
        )


class ChatCompletionRequest(_SamplingFields):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def wants_tool_calls(self) -> bool:
        """Whether generated ``<tool_call>`` blocks are turned into ``tool_calls``."""
        return bool(self.tools) and self.tool_choice != "none"

    def logprobs_count(self) -> int | None:
        """``SamplingParams.logprobs``: None when off (or streamed), else the number of alternatives."""
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs")
        if not self.logprobs or self.stream:
            return None
        return self.top_logprobs or 0


def message_from_text(text: str, finish_reason: str, tools_requested: bool) -> tuple[dict[str, Any], str]:
    """The assistant ``message`` of a non-streamed choice and its ``finish_reason``.

    With ``tools_requested`` and tool calls in ``text``: ``content`` is the rest of the text (or None),
    ``tool_calls`` holds the calls and the finish reason is ``tool_calls``.
    """
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if not tools_requested:
        return message, finish_reason
    content, calls = parse_tool_calls(text)
    if not calls:
        return message, finish_reason
    return {**message, "content": content, "tool_calls": calls}, "tool_calls"


class CompletionRequest(_SamplingFields):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.total_tokens,
    }


def _sse(chunks: list[dict[str, Any]]) -> StreamingResponse:
    def lines() -> Iterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")


def _backend(request: Request) -> Any:
    return request.app.state.backend()


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(
    request: Request, principal: PrincipalDep, registry: RegistryDep, body: ChatCompletionRequest
) -> dict[str, Any] | StreamingResponse:
    served = await run_in_threadpool(registry.resolve, principal, body.model)
    params = dataclasses.replace(body.sampling(body.max_completion_tokens), logprobs=body.logprobs_count())
    tools_requested = body.wants_tool_calls()
    backend = await run_in_threadpool(_backend, request)
    cid, created = ids.new_completion_id(), int(time.time())
    if body.stream:
        cancel = threading.Event()
        # Raises bad requests here, before the response starts; generation then runs in the backend's thread.
        deltas: Iterator[StreamDelta] = await run_in_threadpool(
            functools.partial(backend.stream_chat, served, body.messages, params, tools=body.tools, cancel=cancel)
        )
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model}
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        # The background task also ends generation when the client left before the first chunk was sent.
        return StreamingResponse(
            _chat_events(request, deltas, cancel, base, include_usage, tools_requested),
            media_type="text/event-stream",
            background=BackgroundTask(cancel.set),
        )
    gen: Generation = await run_in_threadpool(backend.chat, served, body.messages, params, tools=body.tools)
    choices = []
    for i, c in enumerate(gen.choices):
        message, finish = message_from_text(c.text, c.finish_reason, tools_requested)
        logprobs = None if params.logprobs is None else {"content": c.logprobs or [], "refusal": None}
        choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": logprobs})
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": choices,
        "usage": _usage(gen),
        "system_fingerprint": None,
    }


_NO_MORE = object()


def _next(it: Iterator[StreamDelta]) -> Any:
    return next(it, _NO_MORE)


async def _chat_events(
    request: Request,
    deltas: Iterator[StreamDelta],
    cancel: threading.Event,
    base: dict[str, Any],
    include_usage: bool,
    tools_requested: bool = False,
) -> AsyncIterator[str]:
    """SSE lines of ``chat.completion.chunk`` objects, each sent as soon as the backend yields its text.

    With ``tools_requested`` each choice's text is held back until it ends, then sent as at most one
    content chunk followed by one ``tool_calls`` chunk per call found.

    Ends the generation (``cancel``) when the client goes away: starlette cancels this generator on
    ``http.disconnect``, and the disconnect is also checked between chunks.
    """

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> str:
        return f"data: {json.dumps({**base, 'choices': choices, 'usage': usage})}\n\n"

    def piece(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        return event([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])

    started = {0}
    held: dict[int, list[str]] = {}
    try:
        yield piece(0, {"role": "assistant", "content": ""})
        while True:
            try:
                item = await anyio.to_thread.run_sync(_next, deltas)
            except Exception as exc:  # the status line is sent: report the failure in the stream
                log.exception("streamed generation failed")
                message = str(exc) if isinstance(exc, OpenFTError) else "The server had an error while generating."
                yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
                return
            if item is _NO_MORE:
                break
            if await request.is_disconnected():
                return
            if item.usage is not None:
                if include_usage:
                    prompt, completion = item.usage
                    yield event(
                        [],
                        {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
                    )
                continue
            if item.index not in started:
                started.add(item.index)
                yield piece(item.index, {"role": "assistant", "content": ""})
            if item.text and tools_requested:
                held.setdefault(item.index, []).append(item.text)
            elif item.text:
                yield piece(item.index, {"content": item.text})
            if item.finish_reason is not None:
                finish: str = item.finish_reason
                if tools_requested:
                    content, calls = parse_tool_calls("".join(held.pop(item.index, [])))
                    if content:
                        yield piece(item.index, {"content": content})
                    for k, call in enumerate(calls):
                        yield piece(item.index, {"tool_calls": [{"index": k, **call}]})
                    if calls:
                        finish = "tool_calls"
                yield piece(item.index, {}, finish)
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()  # a no-op once generation has ended


@router.post("/completions", response_model=None)
async def create_completion(
    request: Request, principal: PrincipalDep, registry: RegistryDep, body: CompletionRequest
) -> dict[str, Any] | StreamingResponse:
    if isinstance(body.prompt, list) and len(body.prompt) != 1:
        raise InvalidRequest("Only one prompt per request is supported.", param="prompt")
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    served = await run_in_threadpool(registry.resolve, principal, body.model)
    backend = await run_in_threadpool(_backend, request)
    gen: Generation = await run_in_threadpool(backend.complete, served, prompt, body.sampling())
    cid, created = f"cmpl-{ids.new_completion_id()[9:]}", int(time.time())
    choices = [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
        for i, c in enumerate(gen.choices)
    ]
    body_out = {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": body.model,
        "choices": choices,
        "usage": _usage(gen),
    }
    if not body.stream:
        return body_out
    chunks: list[dict[str, Any]] = [{**body_out, "usage": None}]
    if (body.stream_options or {}).get("include_usage"):
        chunks.append({**body_out, "choices": [], "usage": _usage(gen)})
    return _sse(chunks)
