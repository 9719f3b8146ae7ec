"""``HFBackend``: chat and completions with transformers + PEFT, one copy of each base model in memory.

The CPU/dev backend (vLLM is the one for throughput at scale). Importing this module is cheap; torch,
transformers and peft are imported when a model is first served.

* ``pool.ModelPool`` loads each base model once; a fine-tuned model is a LoRA adapter loaded onto it
  on first use and evicted least-recently-used under a memory budget. Base models (and whole
  fine-tuned models) are unloaded least-recently-used beyond their own budget; each request holds its
  model from the call until its engine is done with it, so a model is never unloaded under one.
* ``engine.BatchEngine`` (one per base) decodes every request on that base in shared batches, rows of
  different adapters together; see its docstring.
* Every call checks the request (parameters, template, context window, adapter files) in the caller's
  thread and raises ``InvalidRequest``/``ModelNotFound`` before anything is generated; streaming calls
  return once the request has joined a batch.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from openft.errors import ModelNotFound
from openft.models.catalog import BaseModel
from openft.serving.backend import Generation, SamplingParams, ServedModel, StreamDelta
from openft.serving.engine import BatchEngine
from openft.serving.pool import LoadedBase, ModelPool, adapter_name, check_adapter_files
from openft.serving.prompts import chat_prompt_ids, check_params, completion_prompt_ids, max_new_tokens
from openft.serving.requests import Request, collect, drain
from openft.serving.schema_constraint import schema_grammar

__all__ = ["HFBackend", "adapter_name"]


class HFBackend:
    """The transformers + PEFT ``Backend``.

    Args:
        models_dir: Where built and converted base weights are cached (``$OPENFT_HOME/models``).
        threads: Torch intra-op threads (process-wide), set when the first model loads; None: every
            core but one (``pool.default_threads``). On a busy host use few.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
        adapter_budget_mb: Most megabytes of adapter weights kept loaded per base model.
        max_adapters: Most adapters kept loaded per base model.
        model_budget_mb: Most megabytes of loaded models (weights and adapters) in all; least recently
            used idle models are unloaded beyond it. None: half the memory of the serving device.
        batch_window_ms: How long an idle engine waits for more requests to prefill together.
        max_batch_rows: Most rows (choices) decoded together per base model.
        background_rows_with_live: Most rows of background requests decoded beside live ones.
        decode: Which forward pass decodes: ``auto``, ``plain``, ``fast``, ``fast-bf16`` or
            ``fast-int8`` (``pool.decode_plan``).
        home: Where the base models served are recorded for ``warmup`` (None: nowhere).
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
        background_rows_with_live: int = 2,
        model_budget_mb: float | None = None,
        decode: str = "auto",
        home: Path | None = None,
    ) -> None:
        self.pool = ModelPool(
            models_dir,
            device=device,
            threads=threads,
            budget_bytes=int(adapter_budget_mb * 1024 * 1024),
            max_adapters=max_adapters,
            model_budget_bytes=None if model_budget_mb is None else int(model_budget_mb * 1024 * 1024),
            on_unload=self._retire,
            decode=decode,
            on_load=None if home is None else functools.partial(_remember, home),
        )
        self.window_s = batch_window_ms / 1000
        self.max_rows = max_batch_rows
        self.background_rows_with_live = background_rows_with_live
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

    @property
    def base_evictions(self) -> Counter[str]:
        """Times each base model was unloaded to keep the loaded models within the memory budget."""
        return self.pool.evictions

    # -- Backend -------------------------------------------------------------------------------

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
        """Answer ``messages`` (OpenAI chat format) through the model's chat template.

        Setting ``cancel`` stops generating within about one token; the answer is then cut short.
        ``background`` work yields the batch to live requests (``BatchEngine``).

        Raises:
            InvalidRequest: Bad sampling parameters, unsupported content, a template that rejects the
                messages, or a prompt that does not fit the context window.
            ModelNotFound: The model's adapter directory has no adapter in it.
            OpenFTError: The base model or the adapter could not be loaded.
        """
        stream = self.stream_chat(model, messages, params, tools=tools, cancel=cancel, background=background)
        return collect(stream, params)

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
        """``chat`` as it is generated; raises what ``chat`` raises, up front.

        Setting ``cancel`` (or closing the iterator) drops the request's rows from the batch at the next
        step; the iterator then ends without ``usage``.
        """
        check_params(params)
        prompt = functools.partial(chat_prompt_ids, model_id=model.id, messages=messages, tools=tools)
        return self._start(model, params, "messages", cancel, prompt, background=background)

    def complete(
        self, model: ServedModel, prompt: str, params: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Generation:
        """Continue ``prompt`` as raw text (the tokenizer adds BOS where it normally does); ``cancel`` as in ``chat``.

        Raises:
            InvalidRequest: Bad sampling parameters or a prompt that does not fit the context window.
            ModelNotFound: The model's adapter directory has no adapter in it.
            OpenFTError: The base model or the adapter could not be loaded.
        """
        return collect(self.stream_complete(model, prompt, params, cancel=cancel), params)

    def stream_complete(
        self, model: ServedModel, prompt: str, params: SamplingParams, *, cancel: threading.Event | None = None
    ) -> Iterator[StreamDelta]:
        """``complete`` as it is generated, as ``stream_chat`` streams ``chat``."""
        check_params(params)
        return self._start(model, params, "prompt", cancel, lambda t: completion_prompt_ids(t, prompt))

    def preload(self, base: BaseModel) -> None:
        """Load ``base`` and answer one token with it, so that its first request finds it ready.

        Raises:
            OpenFTError: The weights could not be loaded.
        """
        self.complete(ServedModel(id=base.id, base=base), "Hi", SamplingParams(max_tokens=1, temperature=0))

    def unload(self, model_id: str) -> None:
        """Free ``model_id``: its adapter and its checkpoints' adapters, or a base model with its adapters.

        Unknown or already unloaded ids are ignored.
        """
        checkpoints = f"{model_id}:ckpt-step-"
        for loaded in self.pool.loaded():
            if loaded.base.id == model_id or loaded.base.id.startswith(checkpoints):  # a whole fine-tuned model
                self.pool.drop(loaded.base.id)  # stops its engine (``_retire``)
                continue
            with self._guard:
                engine = self._engines.get(loaded.base.id)
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

    def resident_bytes(self) -> dict[str, int]:
        """Base model id -> the bytes it holds: parameters and buffers, plus its adapters' weights."""
        return {loaded.base.id: loaded.resident_bytes for loaded in self.pool.loaded()}

    # -- internals -------------------------------------------------------------------------------

    def _engine(self, loaded: LoadedBase) -> BatchEngine:
        """``loaded``'s engine, started on first use (ModelNotFound: the model was unloaded meanwhile)."""
        with self._guard:
            engine = self._engines.get(loaded.base.id)
            if engine is None or engine.loaded is not loaded:
                if not self.pool.holds(loaded):  # no engine for a model ``_retire`` would never stop
                    raise ModelNotFound("The model was unloaded.", param="model")
                engine = BatchEngine(
                    loaded,
                    window_s=self.window_s,
                    max_rows=self.max_rows,
                    background_rows_with_live=self.background_rows_with_live,
                )
                self._engines[loaded.base.id] = engine
            return engine

    def _retire(self, loaded: LoadedBase) -> None:
        """Stop the engine of a model the pool let go of (its requests, if any, end with an error)."""
        with self._guard:
            engine = self._engines.get(loaded.base.id)
            if engine is None or engine.loaded is not loaded:
                return
            del self._engines[loaded.base.id]
        engine.stop()

    def _start(
        self,
        model: ServedModel,
        params: SamplingParams,
        prompt_param: str,
        cancel: threading.Event | None,
        prompt_ids: Callable[[Any], list[int]],
        *,
        background: bool = False,
    ) -> Iterator[StreamDelta]:
        """Tokenize and check the request, then hand it to its model's engine once admitted into a batch.

        The model is held from here until the engine ends the request (``Request.on_end``).
        """
        grammar = None
        if params.response_format == "json_schema":
            grammar = schema_grammar(params.json_schema if params.json_schema is not None else {"type": "object"})
        loaded = self.pool.acquire(model.base)
        try:
            ids = prompt_ids(loaded.tokenizer)
            max_new = max_new_tokens(params, len(ids), model.base.context_length, prompt_param=prompt_param)
            check_adapter_files(model)
            engine = self._engine(loaded)
        except BaseException:
            self.pool.release(loaded)
            raise
        request = Request(
            served=model,
            prompt_ids=ids,
            params=params,
            max_new=max_new,
            json_mode=params.response_format == "json_object",
            grammar=grammar,
            cancel=cancel if cancel is not None else threading.Event(),
            on_end=functools.partial(self.pool.release, loaded),
            background=background,
        )
        engine.submit(request)
        return drain(request)


def _remember(home: Path, base: BaseModel) -> None:
    from openft.serving.warmup import remember

    remember(home, base.id)
