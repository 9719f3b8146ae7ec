"""/v1/responses: create (streamed or not), retrieve, delete and list input items of stored responses.

A response runs as the chat completion it corresponds to: the same model resolution (base, fine-tuned
and checkpoint models, permissions included), the same ``ChatCompletionRequest`` turned into
``SamplingParams`` and the same backend call, on the same generation threads. What the Responses API
adds (items, conversations, storage) lives in ``openft/responses``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from openft.api.deps import PrincipalDep, ReadsDep, RegistryDep
from openft.api.generations import GenerationThreads
from openft.api.inference import CLIENT_CLOSED, ChatCompletionRequest
from openft.api.response_streams import response_events
from openft.errors import InvalidRequest
from openft.responses.items import output_items
from openft.responses.request import ResponseCreateRequest
from openft.responses.service import ResponseService, Turn, usage
from openft.serving.backend import Generation, SamplingParams, StreamDelta

router = APIRouter(prefix="/v1/responses", tags=["responses"])

_CHAT_PARAMS = {"response_format": "text.format", "max_completion_tokens": "max_output_tokens"}
"""Chat parameters a Responses request sets, by the name the client used."""


async def _service(request: Request) -> ResponseService:
    service: ResponseService = request.app.state.responses
    return service


ResponsesDep = Annotated[ResponseService, Depends(_service)]


def _renamed(param: str | None) -> str | None:
    if param is None:
        return None
    head, dot, rest = param.partition(".")
    return _CHAT_PARAMS.get(head, head) + dot + rest


def _chat_request(
    body: ResponseCreateRequest, messages: list[dict[str, Any]]
) -> tuple[ChatCompletionRequest, SamplingParams]:
    """The chat request ``body`` runs as, and its sampling parameters; chat's refusals name the Responses
    parameter."""
    try:
        chat = ChatCompletionRequest(**body.chat_fields(messages))
        return chat, chat.params()
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _renamed(".".join(str(p) for p in first.get("loc", ())) or None)
        raise InvalidRequest(f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param) from exc
    except InvalidRequest as exc:
        exc.param = _renamed(exc.param)
        exc.message = exc.message.replace("response_format", "text.format")
        raise


async def _start(
    request: Request,
    threads: GenerationThreads,
    turn: Turn,
    generate: Callable[..., Any],
    params: SamplingParams,
    tools: list[dict[str, Any]] | None,
    cancel: threading.Event,
) -> tuple[Any, Turn]:
    """``generate(messages, params, tools=..., cancel=...)`` on a generation thread (None: the client left),
    and the turn it ran for: with ``truncation: auto`` a conversation longer than the model's context
    drops its oldest turns until it fits, as OpenAI's does."""
    while True:
        call = functools.partial(generate, turn.messages, params, tools=tools)
        try:
            return await threads.run_until_disconnect(request.receive, call, cancel), turn
        except InvalidRequest as exc:
            auto = turn.request.truncation == "auto" and exc.code == "context_length_exceeded"
            shorter = turn.without_oldest_turn() if auto else None
            if shorter is None:
                raise
            turn = shorter


@router.post("", response_model=None)
async def create_response(
    request: Request,
    principal: PrincipalDep,
    registry: RegistryDep,
    reads: ReadsDep,
    responses: ResponsesDep,
    body: ResponseCreateRequest,
) -> dict[str, Any] | Response:
    threads: GenerationThreads = request.app.state.generations
    turn = await reads.run(responses.begin, principal, body)
    served = await threads.run(registry.resolve, principal, body.model)
    chat, params = _chat_request(body, turn.messages)
    tools_requested = chat.wants_tool_calls()
    backend = await threads.run(request.app.state.backend)  # the first call imports the backend
    generate = backend.stream_chat if body.stream else backend.chat
    cancel = threading.Event()
    # Bad requests are raised here, before a stream starts; generation then runs in the backend's engine.
    outcome, turn = await _start(
        request, threads, turn, functools.partial(generate, served), params, chat.tools, cancel
    )
    if outcome is None:
        return Response(status_code=CLIENT_CLOSED)
    if body.stream:
        deltas: Iterator[StreamDelta] = outcome
        events = response_events(
            request,
            threads,
            deltas,
            cancel,
            service=responses,
            principal=principal,
            turn=turn,
            tools_requested=tools_requested,
        )
        return StreamingResponse(events, media_type="text/event-stream", background=BackgroundTask(cancel.set))
    gen: Generation = outcome
    choice = gen.choices[0]
    output = output_items(
        choice.text,
        incomplete=choice.finish_reason == "length",
        tools_requested=tools_requested,
        logprobs=choice.logprobs,
        parallel_calls=body.parallel_tool_calls is not False,
    )
    return await run_in_threadpool(
        responses.complete, principal, turn, output, usage(gen.prompt_tokens, gen.completion_tokens)
    )


@router.get("/{response_id}", response_model=None)
async def retrieve_response(
    principal: PrincipalDep,
    reads: ReadsDep,
    responses: ResponsesDep,
    response_id: str,
    stream: bool = False,
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    if stream:
        raise InvalidRequest("Streaming a stored response again is not supported.", param="stream")
    if include:
        raise InvalidRequest(f"include value '{include[0]}' is not supported here.", param="include")
    return await reads.run(responses.retrieve, principal, response_id)


@router.delete("/{response_id}", response_model=None)
async def delete_response(principal: PrincipalDep, responses: ResponsesDep, response_id: str) -> dict[str, Any]:
    return await run_in_threadpool(responses.delete, principal, response_id)


@router.get("/{response_id}/input_items", response_model=None)
async def list_input_items(
    principal: PrincipalDep,
    reads: ReadsDep,
    responses: ResponsesDep,
    response_id: str,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    include: Annotated[list[str] | None, Query(alias="include[]")] = None,
) -> dict[str, Any]:
    if include:
        raise InvalidRequest(f"include value '{include[0]}' is not supported for input items.", param="include")
    return await reads.run(responses.input_items, principal, response_id, after=after, limit=limit, order=order)
