"""The ``Backend`` seam between ``api/inference.py`` and a text generator, and its plain data types.

Pure Python (no torch): the API process imports this module before any model is served.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from openft.models.catalog import BaseModel

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ServedModel:
    """What the registry resolves a model id to."""

    id: str
    """The name the client used: a base model id, ``ft:...`` or ``ft:...:ckpt-step-N``."""
    base: BaseModel
    """The base model the weights (and the adapter) belong to."""
    adapter_dir: str | None = None
    """A PEFT adapter directory; None for a base model."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample, with OpenAI's names and defaults."""

    max_tokens: int | None = None
    """Most tokens to generate per choice; None means ``min(256, context length - prompt tokens)``."""
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    n: int = 1
    """Number of choices."""
    stop: list[str] | tuple[str, ...] = field(default=())
    """Up to 4 strings; the text is cut before the first one found and ``finish_reason`` is ``stop``."""
    seed: int | None = None
    """Same seed, model and parameters give the same output (best effort, as in OpenAI's API)."""
    presence_penalty: float = 0.0
    """Subtracted once from the logit of every token already generated (-2 to 2)."""
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once per time it was already generated (-2 to 2)."""
    logprobs: int | None = None
    """None: no logprobs; 0..20: return each generated token's logprob with that many top alternatives."""
    response_format: Literal["text", "json_object", "json_schema"] = "text"
    """``json_object``: decoding is constrained so that each choice is one JSON object; ``json_schema``:
    so that each choice validates against ``json_schema``. Chat completions' ``response_format.type``
    and the Responses API's ``text.format.type`` both arrive here."""
    json_schema: Mapping[str, Any] | None = None
    """With ``response_format="json_schema"``: the schema itself (OpenAI's ``json_schema.schema``, or
    ``text.format.schema`` in the Responses API); None there means any JSON object."""


@dataclass(frozen=True)
class Choice:
    """One generated answer."""

    text: str
    finish_reason: FinishReason
    """``stop``: the model ended its turn or a stop string was found; ``length``: ``max_tokens`` was hit."""
    logprobs: list[dict[str, Any]] | None = None
    """With ``SamplingParams.logprobs`` set: one OpenAI ``{"token", "logprob", "bytes", "top_logprobs"}``
    entry per generated token of ``text`` (the end-of-turn token not included)."""


@dataclass(frozen=True)
class Generation:
    """The choices of one request and its token usage."""

    choices: list[Choice]
    prompt_tokens: int
    """Tokens in the prompt (the rendered chat template for chat), counted once however many choices."""
    completion_tokens: int
    """Tokens generated, summed over the choices."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StreamDelta:
    """One step of a streamed generation.

    A stream yields, per choice, text pieces, then one item with that choice's ``finish_reason``
    (the items of different choices may interleave); its last item has ``usage`` set (and no text)
    once every choice is done.
    """

    index: int = 0
    """The choice the text belongs to."""
    text: str = ""
    """New text (possibly empty), never past a stop string."""
    finish_reason: FinishReason | None = None
    """Set on the choice's last item."""
    usage: tuple[int, int] | None = None
    """``(prompt_tokens, completion_tokens)`` on the stream's very last item, counted as ``Generation`` does."""
    logprobs: list[dict[str, Any]] | None = None
    """With ``SamplingParams.logprobs`` set: the ``Choice.logprobs`` entries of the tokens of ``text``."""


class Backend(Protocol):
    """Generates text for a served model, loading its weights and adapter on first use.

    Methods are synchronous and may block for seconds: async callers run them in a worker thread.
    Bad parameters raise ``openft.errors.InvalidRequest`` naming the ``param``.
    """

    def chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
        cancel: threading.Event | None = None,
        background: bool = False,
    ) -> Generation:
        """The whole answer. Setting ``cancel`` stops generating within about one token (the answer is
        then cut short), as a client that goes away should. ``background`` work (an eval run's items)
        yields the batch to live requests (see ``serving/engine.py``)."""
        ...

    def stream_chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
        cancel: threading.Event | None = None,
        background: bool = False,
    ) -> Iterator[StreamDelta]:
        """``chat`` as it is generated: ``StreamDelta`` items, the last one with ``usage``.

        Bad requests raise when called, before the first item. Setting ``cancel`` (or closing the
        iterator) stops generation within about one token; the iterator then ends without ``usage``.
        """
        ...

    def complete(
        self, model: ServedModel, prompt: str, params: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Generation:
        """``prompt`` continued as raw text; ``cancel`` as in ``chat``."""
        ...

    def stream_complete(
        self, model: ServedModel, prompt: str, params: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta]:
        """``complete`` as it is generated, as ``stream_chat`` streams ``chat``."""
        ...

    def unload(self, model_id: str) -> None:
        """Free an adapter (a fine-tuned model id) or a whole base model with its adapters (a base id)."""
        ...
