"""``HFBackend``: chat and completions with transformers + PEFT, one copy of each base model in memory.

The CPU/dev backend (vLLM is the one for throughput at scale). Importing this module is cheap; torch,
transformers and peft are imported when a model is first served.

* ``pool.ModelPool`` loads each base model once; a fine-tuned model is a LoRA adapter loaded onto it
  on first use and evicted least-recently-used under a memory budget.
* ``engine.BatchEngine`` (one per base) decodes every request on that base in shared batches, rows of
  different adapters together; see its docstring.
* Every call checks the request (parameters, template, context window, adapter files) in the caller's
  thread and raises ``InvalidRequest``/``ModelNotFound`` before anything is generated; streaming calls
  return once the request has joined a batch.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openft.serving.backend import Choice, FinishReason, Generation, SamplingParams, ServedModel, StreamDelta
from openft.serving.engine import END, BatchEngine, Request
from openft.serving.pool import LoadedBase, ModelPool, adapter_name, check_adapter_files
from openft.serving.prompts import chat_prompt_ids, check_params, completion_prompt_ids, max_new_tokens

__all__ = ["HFBackend", "adapter_name"]


class HFBackend:
    """The transformers + PEFT ``Backend``.

    Args:
        models_dir: Where built and converted base weights are cached (``$OPENFT_HOME/models``).
        threads: Torch intra-op threads (process-wide), set when the first model loads; None keeps
            torch's default. On a busy host use few.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
        adapter_budget_mb: Most megabytes of adapter weights kept loaded per base model.
        max_adapters: Most adapters kept loaded per base model.
        batch_window_ms: How long an idle engine waits for more requests to prefill together.
        max_batch_rows: Most rows (choices) decoded together per base model.
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        threads: int | None = None,
        device: str | None = None,
        adapter_budget_mb: float = 1024,
        max_adapters: int = 64,
        batch_window_ms: float = 5,
        max_batch_rows: int = 32,
    ) -> None:
        self.pool = ModelPool(
            models_dir,
            device=device,
            threads=threads,
            budget_bytes=int(adapter_budget_mb * 1024 * 1024),
            max_adapters=max_adapters,
        )
        self.window_s = batch_window_ms / 1000
        self.max_rows = max_batch_rows
        self._engines: dict[str, BatchEngine] = {}
        self._guard = threading.Lock()

    @property
    def base_loads(self) -> Counter[str]:
        """Times each base model's weights were read from disk (1 per base unless it was unloaded)."""
        return self.pool.base_loads

    @property
    def adapter_loads(self) -> Counter[str]:
        """Times each served model id's adapter was loaded (again after an eviction or an unload)."""
        return self.pool.adapter_loads

    # -- Backend -------------------------------------------------------------------------------

    def chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        """Answer ``messages`` (OpenAI chat format) through the model's chat template.

        Raises:
            InvalidRequest: Bad sampling parameters, unsupported content, a template that rejects the
                messages, or a prompt that does not fit the context window.
            ModelNotFound: The model's adapter directory has no adapter in it.
            OpenFTError: The base model or the adapter could not be loaded.
        """
        return _collect(self.stream_chat(model, messages, params, tools=tools), params)

    def stream_chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamDelta]:
        """``chat`` as it is generated; raises what ``chat`` raises, up front.

        Setting ``cancel`` (or closing the iterator) drops the request's rows from the batch at the next
        step; the iterator then ends without ``usage``.
        """
        check_params(params)
        loaded = self.pool.get(model.base)
        ids = chat_prompt_ids(loaded.tokenizer, model.id, messages, tools)
        return self._start(loaded, model, ids, params, "messages", cancel)

    def complete(self, model: ServedModel, prompt: str, params: SamplingParams) -> Generation:
        """Continue ``prompt`` as raw text (the tokenizer adds BOS where it normally does).

        Raises:
            InvalidRequest: Bad sampling parameters or a prompt that does not fit the context window.
            ModelNotFound: The model's adapter directory has no adapter in it.
            OpenFTError: The base model or the adapter could not be loaded.
        """
        return _collect(self.stream_complete(model, prompt, params), params)

    def stream_complete(
        self, model: ServedModel, prompt: str, params: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta]:
        """``complete`` as it is generated, as ``stream_chat`` streams ``chat``."""
        check_params(params)
        loaded = self.pool.get(model.base)
        ids = completion_prompt_ids(loaded.tokenizer, prompt)
        return self._start(loaded, model, ids, params, "prompt", cancel)

    def unload(self, model_id: str) -> None:
        """Free ``model_id``: its adapter and its checkpoints' adapters, or a base model with its adapters.

        Unknown or already unloaded ids are ignored.
        """
        checkpoints = f"{model_id}:ckpt-step-"
        for loaded in self.pool.loaded():
            engine = self._engines.get(loaded.base.id)
            if loaded.base.id == model_id or loaded.base.id.startswith(checkpoints):  # a whole fine-tuned model
                with self._guard:
                    self._engines.pop(model_id, None)
                if engine is not None:
                    engine.stop()
                self.pool.drop(loaded.base.id)
                continue
            with loaded.lock:
                ids = {i for i in loaded.adapters if i == model_id or i.startswith(checkpoints)}
            if ids and engine is not None:
                engine.unload(ids)

    # -- introspection ---------------------------------------------------------------------------

    def loaded(self) -> dict[str, list[str]]:
        """Base model id -> ids of the fine-tuned models whose adapters are loaded onto it."""
        out: dict[str, list[str]] = {}
        for loaded in self.pool.loaded():
            with loaded.lock:
                out[loaded.base.id] = sorted(loaded.adapters)
        return out

    def adapter_bytes(self) -> dict[str, int]:
        """Base model id -> bytes of the adapter weights loaded onto it."""
        return {loaded.base.id: loaded.adapter_bytes for loaded in self.pool.loaded()}

    def batch_stats(self) -> dict[str, dict[str, int]]:
        """Base model id -> its engine's counters: ``steps``, ``mixed_steps`` (rows of several adapters
        in one forward pass), ``max_rows`` (most rows decoded together), ``active_rows`` (now)."""
        with self._guard:
            engines = dict(self._engines)
        return {base_id: {**engine.stats, "active_rows": engine.active_rows} for base_id, engine in engines.items()}

    def tokenizer(self, model: ServedModel) -> Any:
        """The tokenizer ``model`` is served with (loading its base if needed)."""
        return self.pool.get(model.base).tokenizer

    # -- internals -------------------------------------------------------------------------------

    def _engine(self, loaded: LoadedBase) -> BatchEngine:
        with self._guard:
            engine = self._engines.get(loaded.base.id)
            if engine is None or engine.loaded is not loaded:
                engine = BatchEngine(loaded, window_s=self.window_s, max_rows=self.max_rows)
                self._engines[loaded.base.id] = engine
            return engine

    def _start(
        self,
        loaded: LoadedBase,
        model: ServedModel,
        ids: list[int],
        params: SamplingParams,
        prompt_param: str,
        cancel: threading.Event | None,
    ) -> Iterator[StreamDelta]:
        max_new = max_new_tokens(params, len(ids), model.base.context_length, prompt_param=prompt_param)
        check_adapter_files(model)
        request = Request(
            served=model,
            prompt_ids=ids,
            params=params,
            max_new=max_new,
            json_mode=params.response_format == "json_object",
            cancel=cancel if cancel is not None else threading.Event(),
        )
        self._engine(loaded).submit(request)
        return _drain(request)


def _drain(request: Request) -> Iterator[StreamDelta]:
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


def _collect(deltas: Iterator[StreamDelta], params: SamplingParams) -> Generation:
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
