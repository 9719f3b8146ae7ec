"""One copy of each base model in memory, and the LoRA adapters loaded onto it (least recently used out).

* A base model is loaded once (fp32 on CPU, bf16 on CUDA), by whichever request first needs it; a
  full fine-tune (a whole model directory) is loaded the same way, as its own base.
* Base models are unloaded least recently used when the loaded ones need more than ``model_budget_bytes``:
  each counts its measured resident size (parameter and buffer bytes, plus its adapters' bytes). A
  model with requests in flight is never unloaded: the pool exceeds its budget for a while instead,
  and unloads that model once it is idle (right after its last request ends, or at the next load).
  Nor is the most recently used one, unless a load needs its room: a model larger than the budget
  alone is served, not reloaded for every request. The next request for an unloaded model loads it again.
* Adapters are read on first use (``lora_weights.read_lora``) into their base's ``lora_stack.LoraStack``,
  under a name derived from the served id, and kept in a least-recently-used order. When the adapters
  of one base need more than ``budget_bytes`` (their weights' bytes) or number more than
  ``max_adapters``, the least recently used ones that no running generation needs are deleted.
* ``LoadedBase`` methods that change the model (``ensure_adapter``, ``remove``) are called only by that
  base's batching engine, between decoding steps, so they never race a forward pass.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openft.errors import ModelNotFound, OpenFTError
from openft.models.catalog import BaseModel
from openft.serving import compute
from openft.serving.backend import ServedModel

if TYPE_CHECKING:
    import torch

    from openft.serving.fast_decode import FastLlama, Precision
    from openft.serving.lora_stack import LoraStack

log = logging.getLogger(__name__)


def adapter_name(model_id: str) -> str:
    """An adapter name for ``model_id``: module-attribute safe (no dots or colons) and collision free."""
    slug = re.sub(r"\W", "_", model_id)[:48]
    return f"{slug}_{hashlib.sha1(model_id.encode()).hexdigest()[:10]}"


def check_adapter_files(served: ServedModel) -> None:
    """Raise ModelNotFound when ``served`` names an adapter directory that has no adapter in it."""
    if served.adapter_dir is not None and not (Path(served.adapter_dir) / "adapter_config.json").is_file():
        raise ModelNotFound(
            f"The model `{served.id}` does not exist or you do not have access to it (its adapter files are missing).",
            param="model",
        )


@dataclass
class LoadedAdapter:
    name: str
    directory: str
    bytes: int


@dataclass
class LoadedBase:
    """A base model in memory, with the adapters loaded onto it."""

    base: BaseModel
    model: Any
    """A ``PreTrainedModel``; the layers its loaded adapters target are wrapped by ``lora``."""
    lora: LoraStack
    tokenizer: Any
    device: torch.device
    eos_ids: list[int]
    pad_id: int
    budget_bytes: int
    max_adapters: int
    adapters: OrderedDict[str, LoadedAdapter] = field(default_factory=OrderedDict)
    """Served model id -> its adapter, least recently used first."""
    adapter_loads: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards ``adapters`` for readers on other threads."""
    weight_bytes: int = 0
    """Bytes of the model's parameters and buffers (and of ``fast``'s converted weights), measured once loaded."""
    fast: FastLlama | None = None
    """The lean forward pass that decodes this model (None: transformers' forward; see ``decode_plan``)."""
    in_flight: int = 0
    """Requests holding this model (``ModelPool.acquire`` .. ``release``); guarded by the pool's lock."""

    @property
    def adapter_bytes(self) -> int:
        with self.lock:
            return sum(a.bytes for a in self.adapters.values())

    @property
    def resident_bytes(self) -> int:
        """What this model holds in memory: its weights and its loaded adapters."""
        return self.weight_bytes + self.adapter_bytes

    def ensure_adapter(self, served: ServedModel, pinned: set[str]) -> str | None:
        """Load ``served``'s adapter if needed and mark it most recently used; its name (None: the base).

        ``pinned`` ids (adapters of rows still generating) are never evicted to make room.

        Raises:
            ModelNotFound: The adapter directory has no adapter in it.
            OpenFTError: The adapter could not be loaded.
        """
        if served.adapter_dir is None:
            return None
        known = self.adapters.get(served.id)
        if known is not None and known.directory == served.adapter_dir:
            with self.lock:
                self.adapters.move_to_end(served.id)
            return known.name
        if known is not None:  # the id now points at another directory
            self.remove(served.id)
        check_adapter_files(served)
        loaded = self._load(served)
        with self.lock:
            self.adapters[served.id] = loaded
            self.adapter_loads[served.id] += 1
        self._evict(pinned | {served.id})
        return loaded.name

    def remove(self, model_id: str) -> bool:
        """Delete the adapter served as ``model_id``; whether it was loaded."""
        with self.lock:
            adapter = self.adapters.pop(model_id, None)
        if adapter is None:
            return False
        self.lora.remove(adapter.name)
        log.info("unloaded adapter %s", model_id, extra={"action": "adapter_unloaded"})
        return True

    def _evict(self, pinned: set[str]) -> None:
        while len(self.adapters) > self.max_adapters or self.adapter_bytes > self.budget_bytes:
            victim = next((model_id for model_id in self.adapters if model_id not in pinned), None)
            if victim is None:
                return
            log.info("evicting adapter %s (least recently used)", victim, extra={"action": "adapter_evicted"})
            self.remove(victim)

    def _load(self, served: ServedModel) -> LoadedAdapter:
        from openft.serving.lora_weights import read_lora

        assert served.adapter_dir is not None
        name = adapter_name(served.id)
        log.info("loading adapter %s onto %s", served.id, self.base.id, extra={"action": "adapter_loading"})
        try:
            weights = read_lora(served.adapter_dir, self.model)
        except Exception as exc:
            raise OpenFTError(f"Could not load the adapter of `{served.id}`: {exc}") from exc
        self.lora.add(name, weights)
        return LoadedAdapter(name=name, directory=served.adapter_dir, bytes=weights.bytes)


def measured_bytes(model: Any) -> int:
    """Bytes of ``model``'s parameters and buffers (tied weights counted once)."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def default_threads() -> int:
    """Torch threads for serving: every core this process may use but one, and at least one.

    The core left over is for the threads that are not torch's (the API's event loop streaming the
    tokens, the engine's own Python between steps) and for a worker training beside the server: each
    parallel region waits for its slowest thread, so a torch thread displaced by anything else stalls
    the step. On a 2-core machine shared with other work, a served 10-token answer took 6-18 s with 2
    threads against 1.2-1.4 s with 1; on an idle one (once models load on threads of their own,
    ``compute.py``) a server with 2 threads decoded 8 streams at 106-108 tok/s against 79-89 with 1
    (``benchmarks/README.md``, decode speed): a dedicated server can set ``OPENFT_SERVING_THREADS`` to
    its cores.
    """
    return max(1, len(os.sched_getaffinity(0)) - 1)


def device_memory_bytes(device: torch.device) -> int:
    """Total memory of ``device``: the GPU's own, or the host's RAM within this process's cgroup limit."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


class ModelPool:
    """The loaded base models of one server, least recently used first.

    Args:
        models_dir: Where built and converted base weights are cached.
        device: ``"cpu"``, ``"cuda"``...; None picks CUDA when available.
        threads: torch intra-op threads, set when the first model loads; None: ``default_threads()``.
        budget_bytes: Most adapter parameter bytes kept per base model.
        max_adapters: Most adapters kept per base model.
        model_budget_bytes: Most resident bytes of all loaded models together (see the module
            docstring); None: half the memory of the device they are loaded on.
        on_unload: Called with a model the pool let go of (evicted or dropped), to stop its engine.
        decode: Which forward pass decodes (``decode_plan``).
        on_load: Called with each base model once it is loaded (``warmup.remember``).
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        device: str | None,
        threads: int | None,
        budget_bytes: int,
        max_adapters: int,
        model_budget_bytes: int | None = None,
        on_unload: Callable[[LoadedBase], None] | None = None,
        decode: str = "auto",
        on_load: Callable[[BaseModel], None] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.decode = decode
        self.on_load = on_load
        self.device = device
        self.threads = threads
        self.budget_bytes = budget_bytes
        self.max_adapters = max_adapters
        self.model_budget_bytes = model_budget_bytes
        self.on_unload = on_unload
        self.base_loads: Counter[str] = Counter()
        self.adapter_loads: Counter[str] = Counter()
        """Times each served model id's adapter was loaded, on any base, ever."""
        self.evictions: Counter[str] = Counter()
        """Times each base model was unloaded to stay within ``model_budget_bytes``."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._loaded: OrderedDict[str, LoadedBase] = OrderedDict()
        self._sizes: dict[str, int] = {}
        """Base id -> its weight bytes when it was last loaded: the room a reload needs."""

    def acquire(self, base: BaseModel) -> LoadedBase:
        """The loaded ``base``, loading it on first use, held (never evicted) until ``release``.

        Concurrent first users wait for one load. Before a load, idle models are evicted to make room
        for it when its size is known from an earlier load; after it, to get back within the budget.

        Raises:
            OpenFTError: The weights could not be loaded.
        """
        with self._guard:
            lock = self._locks.setdefault(base.id, threading.Lock())
        with lock:
            with self._guard:
                loaded = self._loaded.get(base.id)
                if loaded is not None:
                    loaded.in_flight += 1
                    self._loaded.move_to_end(base.id)
            if loaded is None:
                self._evict(room=self._sizes.get(base.id, 0))
                loaded = compute.on_a_thread_of_its_own(lambda: self._load(base), name=f"openft-load-{base.id}")
                if self.on_load is not None:
                    self.on_load(base)
                with self._guard:
                    loaded.in_flight += 1
                    self._loaded[base.id] = loaded
                    self._sizes[base.id] = loaded.weight_bytes
                    self.base_loads[base.id] += 1
                    if loaded.weight_bytes > self._budget():
                        log.warning(
                            "base model %s (%.1f MB) alone exceeds the %.1f MB serving budget",
                            base.id,
                            loaded.weight_bytes / 2**20,
                            self._budget() / 2**20,
                        )
        self._evict()
        return loaded

    def release(self, loaded: LoadedBase) -> None:
        """End one ``acquire`` of ``loaded``; the last one lets an over-budget pool evict it."""
        with self._guard:
            loaded.in_flight -= 1
            idle = loaded.in_flight == 0 and self._loaded.get(loaded.base.id) is loaded  # not dropped meanwhile
            evict = idle and self._total_bytes() > self._budget()
        if evict:
            # Not inline: the last release of a request happens on its model's engine thread, which
            # must not wait for an engine (its own, or one whose thread is waiting for it) to stop.
            threading.Thread(target=self._evict, name="openft-evict", daemon=True).start()

    def get(self, base: BaseModel) -> LoadedBase:
        """The loaded ``base`` (loading it if needed), not held: it may be evicted at any time."""
        loaded = self.acquire(base)
        self.release(loaded)
        return loaded

    def loaded(self) -> list[LoadedBase]:
        with self._guard:
            return list(self._loaded.values())

    def holds(self, loaded: LoadedBase) -> bool:
        """Whether ``loaded`` is still in the pool (not evicted or dropped)."""
        with self._guard:
            return self._loaded.get(loaded.base.id) is loaded

    def drop(self, base_id: str) -> None:
        """Unload a base model now, even with requests in flight (its engine ends them)."""
        with self._guard:
            loaded = self._loaded.pop(base_id, None)
        if loaded is not None:
            log.info("unloading base model %s", base_id, extra={"action": "base_unloaded"})
            self._unload([loaded])

    def _budget(self) -> int:
        if self.model_budget_bytes is None:
            import torch

            device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model_budget_bytes = device_memory_bytes(device) // 2
            log.info("serving models within %.0f MB (half of the %s's memory)", self.model_budget_bytes / 2**20, device)
        return self.model_budget_bytes

    def _total_bytes(self) -> int:
        return sum(loaded.resident_bytes for loaded in self._loaded.values())

    def _evict(self, room: int = 0) -> None:
        """Unload idle models, least recently used first, until the loaded ones plus ``room`` bytes fit
        (without a load to make room for, the most recently used one stays)."""
        with self._guard:
            victims = self._victims(room) if self._loaded else []
        self._unload(victims)

    def _victims(self, room: int) -> list[LoadedBase]:
        """Take the models to evict out of the pool (under ``_guard``)."""
        budget = self._budget()
        total = self._total_bytes() + room
        victims: list[LoadedBase] = []
        candidates = list(self._loaded.items())
        for base_id, candidate in candidates if room else candidates[:-1]:
            if total <= budget:
                break
            if candidate.in_flight:
                continue
            size = candidate.resident_bytes
            log.info(
                "evicting base model %s (%.1f MB, least recently used): over the %.1f MB serving budget",
                base_id,
                size / 2**20,
                budget / 2**20,
                extra={"action": "base_evicted", "model": base_id, "bytes": size},
            )
            del self._loaded[base_id]
            total -= size
            victims.append(candidate)
            self.evictions[base_id] += 1
        return victims

    def _unload(self, victims: list[LoadedBase]) -> None:
        """Stop the engines of models taken out of the pool; their memory goes with the last reference."""
        cuda = False
        while victims:
            loaded = victims.pop()
            cuda = cuda or loaded.device.type == "cuda"
            if self.on_unload is not None:
                self.on_unload(loaded)
            del loaded
        if cuda:
            import torch

            torch.cuda.empty_cache()

    def _load(self, base: BaseModel) -> LoadedBase:
        import torch

        from openft.models.loader import load_model_and_tokenizer

        torch.set_num_threads(self.threads or default_threads())
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        log.info("loading base model %s on %s", base.id, device, extra={"action": "base_loading"})
        try:
            model, tokenizer = load_model_and_tokenizer(base, self.models_dir, dtype=dtype)
        except Exception as exc:
            raise OpenFTError(f"Could not load the base model `{base.id}`: {exc}") from exc
        model.to(device)  # type: ignore[arg-type]  # transformers wraps .to with functools.wraps(nn.Module.to)
        model.eval()
        eos: list[int] = []
        configured = model.generation_config.eos_token_id
        for token in [*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id]:
            if isinstance(token, int) and token not in eos:
                eos.append(token)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        from openft.serving.fast_decode import FastLlama
        from openft.serving.lora_stack import LoraStack

        lora = LoraStack(model)
        fast = None
        precision = decode_plan(self.decode, device, model)
        if precision is not None:
            fast = FastLlama(model, lora, precision)
            log.info("decoding %s with the lean forward pass (%s weights)", base.id, precision)
        return LoadedBase(
            base=base,
            model=model,
            lora=lora,
            fast=fast,
            tokenizer=tokenizer,
            device=device,
            eos_ids=eos,
            pad_id=pad,
            budget_bytes=self.budget_bytes,
            max_adapters=self.max_adapters,
            adapter_loads=self.adapter_loads,
            weight_bytes=measured_bytes(model) + (fast.weight_bytes if fast is not None else 0),
        )


DECODE_MODES = ("auto", "plain", "fast", "fast-fp16", "fast-bf16", "fast-int8")
FP16_FROM_BYTES = 64 * 2**20
"""``auto`` serves fp16 weights on CPU from this many bytes of fp32 linear weights: below it they stay in
the caches between tokens and halving them buys nothing."""


def decode_plan(decode: str, device: torch.device, model: Any) -> Precision | None:
    """The weight precision of the lean forward pass for ``model`` on ``device``, or None for transformers'.

    ``plain``: transformers' forward. ``fast``: the lean forward with the model's fp32 weights (the
    same greedy tokens), ``fast-fp16``/``fast-bf16``/``fast-int8``: with converted weights. ``auto``:
    on CUDA transformers' forward (bf16, batched kernels); on CPU the lean forward, over fp16 weights
    (FBGEMM's packed matrices, fp32 activations and sums) when the model's linear weights are large
    enough for the bytes read per token to set the pace (``FP16_FROM_BYTES``) and the kernel exists
    here, else over the fp32 weights. fp16 weights keep SmolLM2's greedy answers token for token and
    its logits within 0.1 % of their spread (``benchmarks/decode_speed.py``); int8 parts from them,
    so it is asked for by name. Models the lean forward does not cover always get transformers'.
    """
    from openft.serving.fast_decode import FastLlama, fp16_kernel_available

    if decode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {decode!r}: one of {', '.join(DECODE_MODES)}")
    if decode == "plain" or (decode == "auto" and device.type != "cpu"):
        return None
    refusal = FastLlama.refusal(model)
    if refusal is not None:
        log.info(
            "transformers' forward decodes %s: the lean forward does not cover its %s", model.name_or_path, refusal
        )
        return None
    if decode == "fast-fp16" and not fp16_kernel_available():
        raise ValueError("decode mode 'fast-fp16' needs PyTorch's FBGEMM engine, which this build lacks")
    if decode == "auto":
        large = FastLlama.linear_weight_bytes(model) >= FP16_FROM_BYTES
        return "fp16" if large and fp16_kernel_available() else "fp32"
    plans: dict[str, Precision] = {"fast": "fp32", "fast-fp16": "fp16", "fast-bf16": "bf16", "fast-int8": "int8"}
    return plans[decode]
