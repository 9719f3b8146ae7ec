"""A LoRA adapter directory read into serving form: per linear layer, ``A`` and ``B`` with the scaling folded in.

PEFT reads the files (``adapter_config.json``, ``adapter_model.safetensors``) and resolves per-layer
ranks and alphas (``rank_pattern``, ``alpha_pattern``, ``use_rslora``) exactly as its own
``load_adapter`` would; the weights are then kept as plain tensors for ``lora_stack.LoraStack``.
Plain LoRA on ``nn.Linear`` layers is what fine-tuning jobs write; adapters that need more (DoRA,
LoRA biases, embedding LoRA, ``modules_to_save``) are refused with a clear error instead of being
served wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_PREFIX = "base_model.model."
_A, _B = ".lora_A.weight", ".lora_B.weight"


class UnsupportedAdapter(ValueError):
    """The adapter uses a PEFT feature the stacked LoRA forward does not implement."""


@dataclass(frozen=True)
class LoraWeights:
    """One adapter's weights for serving."""

    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """Module path (as ``model.named_modules()`` names it) -> ``A`` ``[r, in]`` and ``B^T * scaling``
    ``[r, out]``, in the model's dtype and on its device."""
    rank: int
    """The largest rank over its layers."""

    @property
    def bytes(self) -> int:
        """Bytes of its tensors (what the pool's adapter budget counts)."""
        return sum(t.numel() * t.element_size() for pair in self.layers.values() for t in pair)


def read_lora(directory: str, model: Any) -> LoraWeights:
    """Read the LoRA adapter saved in ``directory`` for ``model`` (a transformers ``PreTrainedModel``).

    Raises:
        UnsupportedAdapter: The adapter is not plain LoRA on ``nn.Linear`` layers of ``model``.
        OSError, ValueError: The files are missing or unreadable.
    """
    import torch
    from peft import LoraConfig
    from peft.utils import load_peft_weights
    from peft.utils.other import get_pattern_key

    config = LoraConfig.from_pretrained(directory)
    for feature in ("use_dora", "lora_bias", "modules_to_save", "trainable_token_indices", "layer_replication"):
        if getattr(config, feature, None):
            raise UnsupportedAdapter(f"LoRA adapters with `{feature}` cannot be served; export it merged instead")
    state = load_peft_weights(directory, device="cpu")
    weight = next(model.parameters())
    modules = dict(model.named_modules())
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        suffix = _A if key.endswith(_A) else _B if key.endswith(_B) else None
        if suffix is None or not key.startswith(_PREFIX):
            raise UnsupportedAdapter(f"unexpected tensor `{key}` in the adapter (only lora_A/lora_B are served)")
        pairs.setdefault(key[len(_PREFIX) : -len(suffix)], {})[suffix] = tensor
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for path, pair in pairs.items():
        module = getattr(modules.get(path), "base_layer", modules.get(path))  # seen through a stacked wrapper
        if not isinstance(module, torch.nn.Linear) or len(pair) != 2:
            raise UnsupportedAdapter(f"`{path}` is not a linear layer with lora_A and lora_B in this model")
        a, b = pair[_A], pair[_B]
        rank = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), path), config.r)
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), path), config.lora_alpha)
        if a.shape != (rank, module.in_features) or b.shape != (module.out_features, rank):
            raise UnsupportedAdapter(f"`{path}`: LoRA shapes {tuple(a.shape)}, {tuple(b.shape)} do not fit r={rank}")
        scaling = alpha / (math.sqrt(rank) if config.use_rslora else rank)
        # Scale in fp32 before casting, as PEFT's fp32 LoRA path would.
        layers[path] = (
            a.to(device=weight.device, dtype=weight.dtype).contiguous(),
            (b.float().t() * scaling).to(device=weight.device, dtype=weight.dtype).contiguous(),
        )
    if not layers:
        raise UnsupportedAdapter("the adapter has no LoRA weights")
    return LoraWeights(layers=layers, rank=max(a.shape[0] for a, _ in layers.values()))
