"""Server-sent events of streamed chat and legacy completions (``data: {chunk}`` ... ``data: [DONE]``).

Each chunk is sent as soon as the backend yields its text, read on a generation thread
(``GenerationThreads``, never FastAPI's thread pool). Generation ends (``cancel``) when the client goes
away: starlette cancels these generators on ``http.disconnect``, and the disconnect is also checked
between chunks. A failure after the status line went out is reported in the stream as an ``error``
chunk, which makes the official clients raise.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Request

from openft.api.generations import GenerationThreads
from openft.errors import OpenFTError
from openft.serving.backend import StreamDelta
from openft.serving.tool_calls import parse_tool_calls

log = logging.getLogger(__name__)
_NO_MORE = object()


def _next(it: Iterator[StreamDelta]) -> Any:
    return next(it, _NO_MORE)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def backend_deltas(
    request: Request, threads: GenerationThreads, deltas: Iterator[StreamDelta], on_error: Callable[[str], None]
) -> AsyncIterator[StreamDelta]:
    """The backend's items, each read on a generation thread; stops when the client disconnects."""
    while True:
        try:
            item = await threads.run(_next, deltas)
        except Exception as exc:
            log.exception("streamed generation failed")
            on_error(str(exc) if isinstance(exc, OpenFTError) else "The server had an error while generating.")
            return
        if item is _NO_MORE or await request.is_disconnected():
            return
        yield item


async def chat_events(
    request: Request,
    threads: GenerationThreads,
    deltas: Iterator[StreamDelta],
    cancel: threading.Event,
    base: dict[str, Any],
    *,
    include_usage: bool,
    tools_requested: bool,
    logprobs: bool,
) -> AsyncIterator[str]:
    """``chat.completion.chunk`` events.

    With ``tools_requested`` each choice's text (and logprobs) is held back until it ends, then sent as
    at most one content chunk followed by one ``tool_calls`` chunk per call found.
    """
    errors: list[str] = []

    def piece(index: int, delta: dict[str, Any], finish: str | None = None, entries: list[Any] | None = None) -> str:
        lp = {"content": entries or [], "refusal": None} if logprobs and entries is not None else None
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return _data({**base, "choices": [choice], "usage": None})

    started = {0}
    held: dict[int, tuple[list[str], list[Any]]] = {}
    try:
        yield piece(0, {"role": "assistant", "content": ""})
        async for item in backend_deltas(request, threads, deltas, errors.append):
            if item.usage is not None:
                if include_usage:
                    yield _data({**base, "choices": [], "usage": _usage(*item.usage)})
                continue
            if item.index not in started:
                started.add(item.index)
                yield piece(item.index, {"role": "assistant", "content": ""})
            if tools_requested:
                texts, entries = held.setdefault(item.index, ([], []))
                texts.append(item.text)
                entries.extend(item.logprobs or [])
            elif item.text or item.logprobs:
                yield piece(item.index, {"content": item.text}, entries=item.logprobs or [])
            if item.finish_reason is not None:
                finish: str = item.finish_reason
                if tools_requested:
                    texts, entries = held.pop(item.index, ([], []))
                    content, calls = parse_tool_calls("".join(texts))
                    if content:
                        yield piece(item.index, {"content": content}, entries=entries)
                    for k, call in enumerate(calls):
                        yield piece(item.index, {"tool_calls": [{"index": k, **call}]})
                    if calls:
                        finish = "tool_calls"
                yield piece(item.index, {}, finish)
        if errors:
            yield _data({"error": {"message": errors[0], "type": "server_error", "param": None, "code": None}})
            return
        if not await request.is_disconnected():
            yield "data: [DONE]\n\n"
    finally:
        cancel.set()  # a no-op once generation has ended


def completion_logprobs(entries: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """Legacy ``logprobs`` of ``/v1/completions``: ``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``.

    ``offset`` is where the completion starts in prompt + completion text (the prompt's length).
    """
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
        "text_offset": offsets,
    }


async def completion_events(
    request: Request,
    threads: GenerationThreads,
    deltas: Iterator[StreamDelta],
    cancel: threading.Event,
    base: dict[str, Any],
    *,
    include_usage: bool,
    logprobs: bool,
    prompt_chars: int,
    echo: str = "",
) -> AsyncIterator[str]:
    """``text_completion`` events: one per text piece, one with each choice's ``finish_reason``
    (``echo``: a first piece with the prompt for each choice)."""
    errors: list[str] = []
    offsets: dict[int, int] = {}

    def piece(index: int, text: str, finish: str | None, entries: list[Any] | None) -> str:
        lp = None
        if logprobs:
            lp = completion_logprobs(entries or [], offsets.get(index, prompt_chars))
            offsets[index] = offsets.get(index, prompt_chars) + len(text)
        choice = {"index": index, "text": text, "logprobs": lp, "finish_reason": finish}
        return _data({**base, "choices": [choice], "usage": None})

    echoed: set[int] = set()
    try:
        async for item in backend_deltas(request, threads, deltas, errors.append):
            if item.usage is not None:
                if include_usage:
                    yield _data({**base, "choices": [], "usage": _usage(*item.usage)})
                continue
            if echo and item.index not in echoed:
                echoed.add(item.index)
                yield _data(
                    {
                        **base,
                        "choices": [{"index": item.index, "text": echo, "logprobs": None, "finish_reason": None}],
                        "usage": None,
                    }
                )
            if item.text or item.logprobs or item.finish_reason:
                yield piece(item.index, item.text, item.finish_reason, item.logprobs)
        if errors:
            yield _data({"error": {"message": errors[0], "type": "server_error", "param": None, "code": None}})
            return
        if not await request.is_disconnected():
            yield "data: [DONE]\n\n"
    finally:
        cancel.set()
