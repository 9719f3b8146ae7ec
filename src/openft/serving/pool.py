"""One copy of each base model in memory, and the LoRA adapters loaded onto it (least recently used out).

* A base model is loaded once (fp32 on CPU, bf16 on CUDA), by whichever request first needs it; a
  full fine-tune (a whole model directory) is loaded the same way, as its own base.
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
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openft.errors import ModelNotFound, OpenFTError
from openft.models.catalog import BaseModel
from openft.serving.backend import ServedModel

if TYPE_CHECKING:
    import torch

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

    @property
    def adapter_bytes(self) -> int:
        with self.lock:
            return sum(a.bytes for a in self.adapters.values())

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


class ModelPool:
    """The loaded base models of one server.

    Args:
        models_dir: Where built and converted base weights are cached.
        device: ``"cpu"``, ``"cuda"``...; None picks CUDA when available.
        threads: torch intra-op threads, set when the first model loads; None keeps torch's default.
        budget_bytes: Most adapter parameter bytes kept per base model.
        max_adapters: Most adapters kept per base model.
    """

    def __init__(
        self, models_dir: Path, *, device: str | None, threads: int | None, budget_bytes: int, max_adapters: int
    ) -> None:
        self.models_dir = Path(models_dir)
        self.device = device
        self.threads = threads
        self.budget_bytes = budget_bytes
        self.max_adapters = max_adapters
        self.base_loads: Counter[str] = Counter()
        self.adapter_loads: Counter[str] = Counter()
        """Times each served model id's adapter was loaded, on any base, ever."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._loaded: dict[str, LoadedBase] = {}

    def get(self, base: BaseModel) -> LoadedBase:
        """The loaded ``base``, loading it on first use (concurrent first users wait for one load).

        Raises:
            OpenFTError: The weights could not be loaded.
        """
        with self._guard:
            lock = self._locks.setdefault(base.id, threading.Lock())
        with lock:
            loaded = self._loaded.get(base.id)
            if loaded is None:
                loaded = self._load(base)
                with self._guard:
                    self._loaded[base.id] = loaded
                    self.base_loads[base.id] += 1
            return loaded

    def loaded(self) -> list[LoadedBase]:
        with self._guard:
            return list(self._loaded.values())

    def drop(self, base_id: str) -> None:
        """Forget a base model (its engine has stopped); its memory goes with the last reference."""
        with self._guard:
            loaded = self._loaded.pop(base_id, None)
        if loaded is not None and loaded.device.type == "cuda":
            import torch

            del loaded
            torch.cuda.empty_cache()
        log.info("unloaded base model %s", base_id, extra={"action": "base_unloaded"})

    def _load(self, base: BaseModel) -> LoadedBase:
        import torch

        from openft.models.loader import load_model_and_tokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        log.info("loading base model %s on %s", base.id, device, extra={"action": "base_loading"})
        try:
            model, tokenizer = load_model_and_tokenizer(base, self.models_dir, dtype=dtype)
        except Exception as exc:
            raise OpenFTError(f"Could not load the base model `{base.id}`: {exc}") from exc
        model.to(device)
        model.eval()
        eos: list[int] = []
        configured = model.generation_config.eos_token_id
        for token in [*(configured if isinstance(configured, list) else [configured]), tokenizer.eos_token_id]:
            if isinstance(token, int) and token not in eos:
                eos.append(token)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        from openft.serving.lora_stack import LoraStack

        return LoadedBase(
            base=base,
            model=model,
            lora=LoraStack(model),
            tokenizer=tokenizer,
            device=device,
            eos_ids=eos,
            pad_id=pad,
            budget_bytes=self.budget_bytes,
            max_adapters=self.max_adapters,
            adapter_loads=self.adapter_loads,
        )
