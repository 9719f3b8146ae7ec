"""The batching engine of one base model: every request on that base, whatever its adapter, decoded together.

One thread per loaded base model owns the model and runs a decode loop over a batch of rows (one row
per choice of each request); with several torch threads, the torch work of each iteration runs on the
process's compute thread (``compute.py`` says why), one engine's step after another's:

* Requests that arrive while the engine is idle are gathered for ``window_s``, then prefilled together
  (left-padded); requests that arrive while it is decoding are prefilled at the next step boundary and
  join the running batch (their key/value cache is left-padded to the batch's length), up to ``max_rows``.
* Rows of different adapters of the same base (and rows of the base itself) share every forward pass:
  each LoRA'd layer computes the base output once and adds every row's low-rank update in batched
  matmuls (``lora_stack.LoraStack``). The base weights are never reloaded or copied per request.
* Each row samples with its own parameters (``sampling.RowSampler``) and stops on its own; a finished,
  cancelled or disconnected row is dropped from the batch at once, the others go on.
* Adapters are loaded, evicted and deleted only by this thread, between steps.
* Every request ends in ``_end`` on this thread, once, whatever ends it (its last row, a cancellation,
  an error, the engine stopping): that is where its ``on_end`` gives its model back to the pool.

Results go to each request's queue as ``StreamDelta`` items; ``HFBackend`` turns them into streams
and ``Generation`` objects.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openft.errors import ModelNotFound
from openft.serving import batch_cache, compute
from openft.serving.backend import StreamDelta
from openft.serving.json_constraint import JsonConstraint
from openft.serving.output import ChoiceText
from openft.serving.pool import LoadedBase
from openft.serving.requests import END, Request
from openft.serving.sampling import RowSampler
from openft.serving.schema_constraint import SchemaConstraint, grammar_tokenizer

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class _Row:
    request: Request
    index: int
    adapter: str | None
    """Its adapter's name in the base's ``LoraStack`` (None: the base model)."""
    sampler: RowSampler
    text: ChoiceText
    position: int
    """Position id of the pending token."""
    pending: int = -1
    """The token sampled last, fed to the next forward pass."""
    done: bool = False


@dataclass
class _Command:
    run: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)


class BatchEngine:
    """Decodes every request of one loaded base model in shared batches (see the module docstring)."""

    def __init__(
        self, loaded: LoadedBase, *, window_s: float = 0.005, max_rows: int = 32, background_rows_with_live: int = 2
    ) -> None:
        self.loaded = loaded
        self.window_s = window_s
        self.max_rows = max_rows
        self.background_rows_with_live = background_rows_with_live
        self._inbox: queue.SimpleQueue[Request | _Command] = queue.SimpleQueue()
        self._backlog: deque[Request] = deque()
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._token_texts: list[str | None] | None = None
        self._grammar_tokenizer: Any = None
        """llguidance's tokenizer of the model, built by the first ``json_schema`` request."""
        self._closed = False
        self._closing = threading.Lock()
        """Orders ``submit`` against ``stop``: no request is queued on an engine that has stopped."""
        # transformers 5 renamed the forward's ``past_key_values`` to ``cache`` (the old name warns, and
        # goes in 5.40); earlier versions know only the old name.
        forward = inspect.signature(loaded.model.forward).parameters
        self._cache_keyword = "cache" if "cache" in forward else "past_key_values"
        self.stats: Counter[str] = Counter()
        """``steps``, ``mixed_steps`` (forward passes over rows of several adapters) and ``max_rows``."""
        self._thread = threading.Thread(target=self._run, name=f"openft-engine-{loaded.base.id}", daemon=True)
        self._thread.start()

    # -- called from other threads ------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Queue ``request`` and wait until it is admitted into a batch.

        Raises:
            ModelNotFound, OpenFTError: Its adapter could not be loaded, or the engine has stopped.
        """
        with self._closing:
            if self._closed:
                request.error = ModelNotFound("The model was unloaded.", param="model")
                self._end(request)
            else:
                self._inbox.put(request)
        request.admitted.wait()
        if request.error is not None:
            raise request.error

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the engine thread between two steps, and wait for it (not at all once stopped)."""
        command = _Command(fn)
        with self._closing:
            if self._closed:
                return
            self._inbox.put(command)
        command.done.wait()

    def unload(self, model_ids: set[str]) -> list[str]:
        """Delete these served ids' adapters, ending the requests that use them; the ids that were loaded."""
        removed: list[str] = []

        def run() -> None:
            gone = ModelNotFound("The model was deleted while generating.", param="model")
            for row in self._rows:
                if row.request.served.id in model_ids and not row.request.cancel.is_set():
                    row.request.cancel.set()
                    row.request.out.put(gone)
            self._drop_finished()
            removed.extend(i for i in model_ids if self.loaded.remove(i))

        self.call(run)
        return removed

    def stop(self) -> None:
        """End every request on this engine (with an error) and its thread, and wait for the thread."""

        def run() -> None:
            gone = ModelNotFound("The model was unloaded while generating.", param="model")
            with self._closing:
                self._closed = True
            queued: list[Request] = []
            while True:  # requests and commands queued behind this one
                try:
                    self._take(self._inbox.get_nowait(), queued)
                except queue.Empty:
                    break
            for request in [*(row.request for row in self._rows), *self._backlog, *queued]:
                request.cancel.set()
                self._end(request, gone)
            self._backlog.clear()
            self._drop_finished()

        if threading.current_thread() is self._thread:
            run()
            return
        self.call(run)
        self._thread.join(timeout=60)

    @property
    def active_rows(self) -> int:
        return len(self._rows)

    # -- the engine thread --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            arrivals: list[Request] = []
            if not self._rows and not self._backlog:
                first = self._inbox.get()
                self._take(first, arrivals)
                deadline = time.monotonic() + self.window_s
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        self._take(self._inbox.get(timeout=left), arrivals)
                    except queue.Empty:
                        break
            while True:
                try:
                    self._take(self._inbox.get_nowait(), arrivals)
                except queue.Empty:
                    break
            self._backlog.extend(arrivals)
            try:
                compute.run(self._admit_and_step)
            except Exception as exc:  # a failed forward pass ends every request in the batch
                log.exception("generation failed on %s", self.loaded.base.id)
                for row in self._rows:
                    row.request.cancel.set()
                    self._end(row.request, exc)
                self._drop_finished()

    def _admit_and_step(self) -> None:
        self._admit()
        if self._rows:
            self._step()

    def _take(self, item: Request | _Command, arrivals: list[Request]) -> None:
        if isinstance(item, _Command):
            try:
                compute.run(item.run)
            finally:
                item.done.set()
        else:
            arrivals.append(item)

    def _admit(self) -> None:
        """Prefill the backlog's requests that fit, and add their rows to the batch.

        Live requests go first; background ones (eval runs) fill what is left, but while any live row
        decodes or waits, at most ``background_rows_with_live`` background rows decode beside it: each row
        slows every step on a CPU, and each admission's prefill stalls the batch, so a big run would
        otherwise multiply a chat's latency. Background rows already decoding finish; nothing is preempted.
        """
        if self._rows and not batch_cache.joinable(self._cache):
            return
        if any(r.background for r in self._backlog):
            self._backlog = deque(sorted(self._backlog, key=lambda r: r.background))  # stable: FIFO within each
        live = any(not r.request.background for r in self._rows) or any(not r.background for r in self._backlog)
        background_room = self.background_rows_with_live if live else self.max_rows
        background_room -= sum(1 for r in self._rows if r.request.background)
        chosen: list[tuple[Request, str | None]] = []
        rows = len(self._rows)
        while self._backlog and rows + self._backlog[0].params.n <= max(self.max_rows, self._backlog[0].params.n):
            if self._backlog[0].background and self._backlog[0].params.n > background_room:
                break  # only background requests are left behind it
            request = self._backlog.popleft()
            if request.cancel.is_set():
                self._end(request)
                continue
            if request.background:
                background_room -= request.params.n
            pinned = {r.request.served.id for r in self._rows} | {r.served.id for r, _ in chosen}
            try:
                adapter = self.loaded.ensure_adapter(request.served, pinned)
            except Exception as exc:
                request.error = exc
                self._end(request)
                continue
            chosen.append((request, adapter))
            rows += request.params.n
            if rows >= self.max_rows:
                break
        if not chosen:
            return
        for request, _ in chosen:
            request.rows_left = request.params.n
            request.admitted.set()
        try:
            new_rows = [self._new_row(r, adapter, i) for r, adapter in chosen for i in range(r.params.n)]
            self._prefill(chosen, new_rows)
        except Exception as exc:  # the new rows may not be in the batch yet: end their requests here
            for request, _ in chosen:
                request.cancel.set()
                self._end(request, exc)
            raise

    def _new_row(self, request: Request, adapter: str | None, index: int) -> _Row:
        loaded = self.loaded
        constraint: JsonConstraint | SchemaConstraint | None = None
        if request.json_mode:
            constraint = JsonConstraint(self._texts(), loaded.eos_ids)
        elif request.grammar is not None:
            if self._grammar_tokenizer is None:
                self._grammar_tokenizer = grammar_tokenizer(loaded.tokenizer, _vocab(loaded), loaded.eos_ids)
            constraint = SchemaConstraint(self._grammar_tokenizer, request.grammar, loaded.eos_ids)
        sampler = RowSampler(
            request.params, index, _vocab(loaded), loaded.device, self._token_text, constraint=constraint
        )
        return _Row(request, index, adapter, sampler, ChoiceText(loaded.tokenizer, request.params.stop), 0)

    def _prefill(self, chosen: list[tuple[Request, str | None]], new_rows: list[_Row]) -> None:
        import torch
        from transformers import DynamicCache

        device = self.loaded.device
        width = max(len(r.prompt_ids) for r, _ in chosen)
        pad = self.loaded.pad_id
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r, _ in chosen], device=device)
        mask = torch.tensor(
            [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r, _ in chosen], device=device
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        fast = self.loaded.fast
        cache = fast.new_cache() if fast is not None else DynamicCache()
        with torch.inference_mode():
            logits = self._forward(ids, mask, positions, cache, [a for _, a in chosen])
            repeat = torch.tensor([j for j, (r, _) in enumerate(chosen) for _ in range(r.params.n)], device=device)
            if len(repeat) != len(chosen) or bool((repeat != torch.arange(len(chosen), device=device)).any()):
                cache.batch_select_indices(repeat)
                mask, logits = mask[repeat], logits[repeat]
            for i, row in enumerate(new_rows):
                row.position = len(row.request.prompt_ids)
                self._pick(row, logits[i])
            self._merge(new_rows, cache, mask)

    def _step(self) -> None:
        import torch

        assert self._mask is not None
        device = self.loaded.device
        ids = torch.tensor([[row.pending] for row in self._rows], device=device)
        positions = torch.tensor([[row.position] for row in self._rows], device=device)
        with torch.inference_mode():
            self._mask = torch.cat(
                [self._mask, torch.ones((len(self._rows), 1), dtype=self._mask.dtype, device=device)], dim=1
            )
            logits = self._forward(ids, self._mask, positions, self._cache, [row.adapter for row in self._rows])
            for i, row in enumerate(self._rows):
                row.position += 1
                if row.request.cancel.is_set():
                    continue  # dropped just below
                self._pick(row, logits[i])
            self._drop_finished()

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any, adapters: list[str | None]) -> torch.Tensor:
        """Last-position logits (float32) of one forward pass, each row through its adapter."""
        self.stats["steps"] += 1
        self.stats["max_rows"] = max(self.stats["max_rows"], len(adapters))
        if len(set(adapters)) > 1:
            self.stats["mixed_steps"] += 1
        self.loaded.lora.select(adapters)
        if self.loaded.fast is not None:
            return self.loaded.fast.forward(ids, mask, positions, cache)
        out = self.loaded.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_keyword: cache},
        )
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    def _pick(self, row: _Row, logits: torch.Tensor) -> None:
        remaining = row.request.max_new - row.text.tokens_used - 1
        token, entry = row.sampler.pick(logits, remaining)
        row.pending = token
        request = row.request
        if token in self.loaded.eos_ids:
            row.text.end_of_turn()
            self._finish(row, ended_turn=True)
            return
        piece, entries = row.text.add(token, entry)
        if piece or entries:
            request.out.put(StreamDelta(index=row.index, text=piece, logprobs=entries or None))
        if row.text.stopped or row.text.tokens_used >= request.max_new:
            self._finish(row, ended_turn=False)

    def _finish(self, row: _Row, *, ended_turn: bool) -> None:
        request = row.request
        row.done = True
        piece, entries = row.text.finish()
        if piece or entries:
            request.out.put(StreamDelta(index=row.index, text=piece, logprobs=entries or None))
        request.out.put(StreamDelta(index=row.index, finish_reason=row.text.reason(ended_turn)))
        request.completion_tokens += row.text.tokens_used
        request.rows_left -= 1
        if request.rows_left == 0:
            request.out.put(StreamDelta(usage=(len(request.prompt_ids), request.completion_tokens)))
            self._end(request)

    def _merge(self, rows: list[_Row], cache: Any, mask: torch.Tensor) -> None:
        """Add freshly prefilled rows (and their cache) to the running batch, then drop finished ones."""
        if not self._rows:
            self._rows, self._cache, self._mask = rows, cache, mask
        else:
            assert self._mask is not None
            self._mask = batch_cache.merge(self._cache, self._mask, cache, mask)
            self._rows = self._rows + rows
        self._drop_finished()

    def _drop_finished(self) -> None:
        """Remove done and cancelled rows from the batch (and their requests, once all their rows are gone)."""
        keep = [i for i, row in enumerate(self._rows) if not row.done and not row.request.cancel.is_set()]
        for row in self._rows:
            if row.request.cancel.is_set() and not row.done:
                row.done = True
                row.request.rows_left -= 1
                if row.request.rows_left == 0:
                    self._end(row.request)
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        assert self._mask is not None
        self._mask = batch_cache.select(self._cache, self._mask, keep)
        self._rows = [self._rows[i] for i in keep]

    def _end(self, request: Request, error: BaseException | None = None) -> None:
        """Call ``request``'s ``on_end``, then close its queue (after ``error``, if any); once per request.

        ``on_end`` comes first so that whoever reads the end (and answers the client) finds the model
        already given back: the client's next request sees the pool as this one left it.
        """
        if request.ended:
            return
        request.ended = True
        if request.on_end is not None:
            request.on_end()
        if error is not None:
            request.out.put(error)
        request.out.put(END)
        request.admitted.set()

    # -- helpers -------------------------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        return str(self.loaded.tokenizer.decode([token]))

    def _texts(self) -> list[str | None]:
        """Each token's text for the JSON constraint (None: special, or not whole characters)."""
        if self._token_texts is None:
            tokenizer = self.loaded.tokenizer
            special = set(tokenizer.all_special_ids)
            texts: list[str | None] = []
            for token in range(_vocab(self.loaded)):
                text = None if token in special else tokenizer.decode([token])
                texts.append(None if text is None or "\ufffd" in text else text)
            self._token_texts = texts
        return self._token_texts


def _vocab(loaded: LoadedBase) -> int:
    return int(loaded.model.get_output_embeddings().weight.shape[0])
