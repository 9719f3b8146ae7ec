"""/v1/chat/completions and /v1/completions over the serving backend (torch is imported on first use).

* Optional parameters this server does not use (``logit_bias``, ``user``, ``parallel_tool_calls``,
  ``service_tier``...) are accepted and ignored. ``store: true`` keeps a chat completion with its
  request and ``metadata`` (``api/stored_completions.py``); a streamed one is kept when its stream has
  run to the end (one that its client left, or that failed, is not).
* ``response_format``: ``json_object`` constrains decoding to one JSON object; ``json_schema`` constrains
  it to JSON that validates against ``json_schema.schema`` (``serving/schema_constraint.py``; a schema
  it cannot enforce is a 400); ``text`` is the default.
* Chat tool calls: with ``tools`` in the request (and ``tool_choice`` not ``"none"``), ``<tool_call>{json}
  </tool_call>`` blocks in the generated text become the message's ``tool_calls`` and ``finish_reason`` is
  ``tool_calls``. A streamed answer with tools is buffered per choice and sent whole when that choice ends.
* ``logprobs`` (chat: ``logprobs`` + ``top_logprobs``; legacy: ``logprobs`` 0-5) on streamed and
  non-streamed answers. Legacy ``echo`` puts the prompt before each choice's text (no logprobs for
  the prompt's tokens).
* Every blocking call (model resolution, loading, generation) runs on the app's ``GenerationThreads``,
  never in FastAPI's thread pool; a non-streamed answer stops when its client disconnects (see
  ``api/generations.py``).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from openft import ids
from openft.api import stored_completions
from openft.api.deps import PrincipalDep, RegistryDep
from openft.api.generations import GenerationThreads
from openft.api.inference_streams import chat_events, completion_events, completion_logprobs
from openft.errors import InvalidRequest
from openft.serving.backend import Generation, SamplingParams, StreamDelta
from openft.serving.requests import collect
from openft.serving.tool_calls import parse_tool_calls

router = APIRouter(prefix="/v1", tags=["inference"])


class _SamplingFields(BaseModel):
    model_config = ConfigDict(extra="allow")  # unused optional parameters are accepted and ignored
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None

    def sampling(
        self,
        max_tokens: int | None,
        logprobs: int | None,
        response_format: Literal["text", "json_object", "json_schema"] = "text",
        json_schema: dict[str, Any] | None = None,
    ) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > 4:
            raise InvalidRequest("stop can have at most 4 sequences.", param="stop")
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            n=self.n or 1,
            stop=stop,
            seed=self.seed,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            logprobs=logprobs,
            response_format=response_format,
            json_schema=json_schema,
        )

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None
    """With ``json_schema``: OpenAI's ``{"name", "description", "schema", "strict"}``."""

    def enforced_schema(self) -> dict[str, Any] | None:
        """The schema a ``json_schema`` answer must validate against (None: any JSON object).

        Not named ``schema``: pydantic's ``BaseModel.schema`` is a classmethod of that name."""
        if self.type != "json_schema":
            return None
        if self.json_schema is None:
            raise InvalidRequest(
                "response_format.json_schema is required with type json_schema.", param="response_format"
            )
        schema = self.json_schema.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object.", param="response_format")
        return schema


class ChatCompletionRequest(_SamplingFields):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    def wants_tool_calls(self) -> bool:
        """Whether generated ``<tool_call>`` blocks are turned into ``tool_calls``."""
        return bool(self.tools) and self.tool_choice != "none"

    def params(self) -> SamplingParams:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs to be true.", param="top_logprobs")
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        kind = self.response_format.type if self.response_format else "text"
        schema = self.response_format.enforced_schema() if self.response_format else None
        return self.sampling(self.max_completion_tokens or self.max_tokens, logprobs, kind, schema)


class CompletionRequest(_SamplingFields):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False

    def text(self) -> str:
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise InvalidRequest("Only one prompt per request is supported.", param="prompt")
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


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


def _chat_answer(
    cid: str, created: int, model: str, params: SamplingParams, tools_requested: bool, gen: Generation
) -> dict[str, Any]:
    """The ``chat.completion`` object of a whole generation."""
    choices = []
    for i, c in enumerate(gen.choices):
        message, finish = message_from_text(c.text, c.finish_reason, tools_requested)
        logprobs = None if params.logprobs is None else {"content": c.logprobs or [], "refusal": None}
        choices.append({"index": i, "message": message, "finish_reason": finish, "logprobs": logprobs})
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": _usage(gen),
        "system_fingerprint": None,
    }


class _RecordedDeltas(Iterator[StreamDelta]):
    """A stream's deltas as they pass, kept to store the whole answer once the stream has run to its end."""

    def __init__(self, deltas: Iterator[StreamDelta]) -> None:
        self._deltas = deltas
        self.seen: list[StreamDelta] = []
        self.finished = False

    def __next__(self) -> StreamDelta:
        try:
            delta = next(self._deltas)
        except StopIteration:
            self.finished = True
            raise
        self.seen.append(delta)
        return delta


async def _stored_after(
    events: AsyncIterator[str],
    request: Request,
    principal: Any,
    body: ChatCompletionRequest,
    recorded: _RecordedDeltas,
    answer: Callable[[Generation], dict[str, Any]],
    params: SamplingParams,
) -> AsyncIterator[str]:
    async for event in events:
        yield event
    if recorded.finished and not await request.is_disconnected():
        whole = answer(collect(iter(recorded.seen), params))
        await stored_completions.keep(request, principal, body.model_dump(exclude_none=True), whole)


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.total_tokens,
    }


def _backend(request: Request) -> Any:
    return request.app.state.backend()


def _threads(request: Request) -> GenerationThreads:
    threads: GenerationThreads = request.app.state.generations
    return threads


CLIENT_CLOSED = 499
"""The status logged for a non-streamed request whose client left before its answer (nginx's code);
nobody receives it."""


def _event_stream(events: Any, cancel: threading.Event) -> StreamingResponse:
    # The background task also ends generation when the client left before the first chunk was sent.
    return StreamingResponse(events, media_type="text/event-stream", background=BackgroundTask(cancel.set))


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(
    request: Request, principal: PrincipalDep, registry: RegistryDep, body: ChatCompletionRequest
) -> dict[str, Any] | Response:
    stored = stored_completions.store_requested(body.model_extra)
    threads = _threads(request)
    served = await threads.run(registry.resolve, principal, body.model)
    params = body.params()
    tools_requested = body.wants_tool_calls()
    backend = await threads.run(_backend, request)  # the first call imports the backend
    cid, created = ids.new_completion_id(), int(time.time())
    if body.stream:
        cancel = threading.Event()
        # Raises bad requests here, before the response starts; generation then runs in the backend's engine.
        deltas: Iterator[StreamDelta] | None = await threads.run_until_disconnect(
            request.receive,
            functools.partial(backend.stream_chat, served, body.messages, params, tools=body.tools),
            cancel,
        )
        if deltas is None:
            return Response(status_code=CLIENT_CLOSED)
        recorded = _RecordedDeltas(deltas) if stored else None
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
        }
        events = chat_events(
            request,
            threads,
            recorded or deltas,
            cancel,
            base,
            include_usage=body.include_usage(),
            tools_requested=tools_requested,
            logprobs=params.logprobs is not None,
        )
        if recorded is not None:
            whole = functools.partial(_chat_answer, cid, created, body.model, params, tools_requested)
            events = _stored_after(events, request, principal, body, recorded, whole, params)
        return _event_stream(events, cancel)
    gen: Generation | None = await threads.run_until_disconnect(
        request.receive, functools.partial(backend.chat, served, body.messages, params, tools=body.tools)
    )
    if gen is None:
        return Response(status_code=CLIENT_CLOSED)
    answer = _chat_answer(cid, created, body.model, params, tools_requested, gen)
    if stored:
        await stored_completions.keep(request, principal, body.model_dump(exclude_none=True), answer)
    return answer


@router.post("/completions", response_model=None)
async def create_completion(
    request: Request, principal: PrincipalDep, registry: RegistryDep, body: CompletionRequest
) -> dict[str, Any] | Response:
    prompt = body.text()
    threads = _threads(request)
    served = await threads.run(registry.resolve, principal, body.model)
    params = body.sampling(body.max_tokens, body.logprobs)
    backend = await threads.run(_backend, request)  # the first call imports the backend
    cid, created = f"cmpl-{ids.new_completion_id()[9:]}", int(time.time())
    base = {"id": cid, "object": "text_completion", "created": created, "model": body.model, "system_fingerprint": None}
    if body.stream:
        cancel = threading.Event()
        deltas: Iterator[StreamDelta] | None = await threads.run_until_disconnect(
            request.receive, functools.partial(backend.stream_complete, served, prompt, params), cancel
        )
        if deltas is None:
            return Response(status_code=CLIENT_CLOSED)
        events = completion_events(
            request,
            threads,
            deltas,
            cancel,
            base,
            include_usage=body.include_usage(),
            logprobs=params.logprobs is not None,
            prompt_chars=len(prompt),
            echo=prompt if body.echo else "",
        )
        return _event_stream(events, cancel)
    gen: Generation | None = await threads.run_until_disconnect(
        request.receive, functools.partial(backend.complete, served, prompt, params)
    )
    if gen is None:
        return Response(status_code=CLIENT_CLOSED)
    choices = [
        {
            "index": i,
            "text": prompt + c.text if body.echo else c.text,
            "finish_reason": c.finish_reason,
            "logprobs": None if params.logprobs is None else completion_logprobs(c.logprobs or [], len(prompt)),
        }
        for i, c in enumerate(gen.choices)
    ]
    return {**base, "choices": choices, "usage": _usage(gen)}
