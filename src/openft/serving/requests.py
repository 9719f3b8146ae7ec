"""A request's life between its caller and its model's engine: what the engine sees (``Request``) and how
the caller reads what the engine puts on its queue (``drain`` as a stream, ``collect`` as a whole).

Pure Python (no torch).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from openft.serving.backend import Choice, FinishReason, Generation, SamplingParams, ServedModel, StreamDelta

END = object()
"""Put on a request's queue after its last item (after ``usage``, an error, or a cancellation)."""


@dataclass
class Request:
    """One chat or completion request, as the engine sees it."""

    served: ServedModel
    prompt_ids: list[int]
    params: SamplingParams
    max_new: int
    """Tokens each choice may generate."""
    json_mode: bool = False
    """``response_format`` ``json_object``: constrained by ``json_constraint.JsonConstraint``."""
    grammar: str | None = None
    """``response_format`` ``json_schema``: the schema's llguidance grammar (``schema_constraint``)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    admitted: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    rows_left: int = 0
    completion_tokens: int = 0
    on_end: Callable[[], None] | None = None
    """Called once when the engine is done with the request (see ``BatchEngine._end``)."""
    ended: bool = False
    background: bool = False
    """Work nobody waits on token by token (an eval run's items): admitted after live requests, and only
    ``BatchEngine.background_rows_with_live`` rows of it while live rows decode."""


def drain(request: Request) -> Iterator[StreamDelta]:
    """``request``'s items as the engine produces them; closing it early cancels the request."""
    finished = False
    try:
        while True:
            item = request.out.get()
            if item is END:
                finished = True
                return
            if isinstance(item, BaseException):
                finished = True
                raise item
            yield item
    finally:
        if not finished:  # closed or dropped early: stop generating
            request.cancel.set()


def collect(deltas: Iterator[StreamDelta], params: SamplingParams) -> Generation:
    """A whole ``Generation`` from a stream of deltas."""
    texts: list[list[str]] = [[] for _ in range(params.n)]
    entries: list[list[dict[str, Any]]] = [[] for _ in range(params.n)]
    reasons: list[FinishReason] = ["length"] * params.n
    usage = (0, 0)
    for delta in deltas:
        if delta.usage is not None:
            usage = delta.usage
            continue
        texts[delta.index].append(delta.text)
        entries[delta.index].extend(delta.logprobs or [])
        if delta.finish_reason is not None:
            reasons[delta.index] = delta.finish_reason
    choices = [
        Choice(
            text="".join(texts[i]),
            finish_reason=reasons[i],
            logprobs=entries[i] if params.logprobs is not None else None,
        )
        for i in range(params.n)
    ]
    return Generation(choices=choices, prompt_tokens=usage[0], completion_tokens=usage[1])
