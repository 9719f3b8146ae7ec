"""``HFBackend.stream_chat``: chat answers sent as they are generated.

* ``generate`` runs in a background thread that takes the per-base lock and holds it until generation
  ends, so streamed and non-streamed requests on one base stay serialised. Its streamer decodes each new
  token (under that lock) and puts ``StreamDelta`` items on a queue that the returned iterator drains.
* Everything that can reject a request (parameters, chat template, context window, adapter loading)
  runs before ``stream_chat`` returns, so that bad requests raise up front, as ``chat`` does.
* Stop strings: text is never sent past one. Up to ``max(len(stop)) - 1`` characters (and any
  trailing half of a UTF-8 character) are held back until the next tokens show they start no stop string.
* ``cancel`` (set by the caller, or by closing the iterator) is checked by a ``StoppingCriteria`` after
  every token, so generation ends within one token and the lock is released.
* ``n`` > 1 generates the choices one after another (greedy ones are identical, as in ``chat``).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from openft.serving.backend import FinishReason, SamplingParams, ServedModel, StreamDelta
from openft.serving.hf import _check_params, _Loaded, _rng, _run_generate

if TYPE_CHECKING:
    from openft.serving.hf import HFBackend

_END = object()


def stream_chat(
    backend: HFBackend,
    model: ServedModel,
    messages: list[dict[str, Any]],
    params: SamplingParams,
    *,
    tools: list[dict[str, Any]] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[StreamDelta]:
    """Start generating ``messages``'s answer in a thread; the iterator of its ``StreamDelta`` items.

    Blocks until the base model holds no other generation and the request has been checked.

    Raises:
        InvalidRequest, ModelNotFound, OpenFTError: As ``HFBackend.chat``.
    """
    _check_params(params)
    cancel = cancel if cancel is not None else threading.Event()
    out: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ready = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            with backend._lock(model.base.id):
                try:
                    state = backend._ensure_base(model.base)
                    ids = backend._chat_ids(state, model, messages, tools)
                    adapter, kwargs = backend._prepare(state, model, ids, params, prompt_param="messages")
                except BaseException as exc:
                    failure.append(exc)
                    return
                finally:
                    ready.set()
                _generate(state, adapter, ids, params, kwargs, cancel, out)
        except BaseException as exc:  # handed to the consumer, which raises it
            out.put(exc)
        finally:
            ready.set()
            out.put(_END)

    threading.Thread(target=work, name=f"openft-stream-{model.base.id}", daemon=True).start()
    ready.wait()
    if failure:
        raise failure[0]
    return _drain(out, cancel)


def _drain(out: queue.SimpleQueue[Any], cancel: threading.Event) -> Iterator[StreamDelta]:
    finished = False
    try:
        while True:
            item = out.get()
            if item is _END:
                finished = True
                return
            if isinstance(item, BaseException):
                finished = True
                raise item
            yield item
    finally:
        if not finished:  # closed or dropped early: stop the generation
            cancel.set()


def _generate(
    state: _Loaded,
    adapter: str | None,
    ids: list[int],
    params: SamplingParams,
    kwargs: dict[str, Any],
    cancel: threading.Event,
    out: queue.SimpleQueue[Any],
) -> None:
    """Stream each choice, then the usage (caller holds the base lock); nothing more once cancelled."""
    import torch

    streamer_cls, cancel_cls = _classes()
    kwargs["stopping_criteria"].append(cancel_cls(cancel))
    stop = [s for s in params.stop if s]
    input_ids = torch.tensor([ids], device=state.device)
    completion_tokens = 0
    with _rng(state, params):
        for index in range(params.n):
            if cancel.is_set():
                return
            streamer = streamer_cls(state, stop, index, out)
            _run_generate(state, adapter, input_ids, {**kwargs, "streamer": streamer})
            if cancel.is_set():
                return
            completion_tokens += streamer.finish()
    out.put(StreamDelta(usage=(len(ids), completion_tokens)))


@functools.cache
def _classes() -> tuple[Any, Any]:
    """Defined on first use so that importing this module does not import torch or transformers."""
    import torch
    from transformers import StoppingCriteria
    from transformers.generation.streamers import BaseStreamer

    class DeltaStreamer(BaseStreamer):
        """Decodes one choice's tokens as they come and queues the text that is safe to send."""

        def __init__(self, state: _Loaded, stop: list[str], index: int, out: queue.SimpleQueue[Any]) -> None:
            self.state, self.stop, self.index, self.out = state, stop, index, out
            self.hold = max((len(s) for s in stop), default=1) - 1
            self.tokens: list[int] = []
            self.sent = 0
            """Characters of the decoded text already sent."""
            self.prompt_seen = self.hit_eos = self.stopped = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:  # generate first hands over the prompt
                self.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                if self.hit_eos:
                    return
                if token in self.state.eos_ids:
                    self.hit_eos = True
                    return
                self.tokens.append(token)
                if not self.stopped:
                    self._send(final=False)

        def end(self) -> None:
            pass

        def _send(self, *, final: bool) -> None:
            text = self.state.tokenizer.decode(self.tokens, skip_special_tokens=True)
            cuts = [i for i in (text.find(s) for s in self.stop) if i >= 0]
            if cuts:
                self.stopped = True
                text = text[: min(cuts)]
            elif not final:
                text = text.rstrip("\ufffd")  # the first bytes of a character still being generated
                text = text[: max(len(text) - self.hold, 0)]
            if len(text) > self.sent:
                self.out.put(StreamDelta(index=self.index, text=text[self.sent :]))
                self.sent = len(text)

        def finish(self) -> int:
            """Send the held-back text and the finish reason; the tokens generated, counted as ``chat`` does."""
            if not self.stopped:
                self._send(final=True)
            reason: FinishReason = "stop" if self.stopped or self.hit_eos else "length"
            self.out.put(StreamDelta(index=self.index, finish_reason=reason))
            row = list(self.tokens)
            if not self.hit_eos:
                while row and row[-1] == self.state.pad_id:
                    row.pop()
            return len(row) + int(self.hit_eos)

    class StopOnCancel(StoppingCriteria):
        """Done as soon as the event is set."""

        def __init__(self, event: threading.Event) -> None:
            self.event = event

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

    return DeltaStreamer, StopOnCancel
