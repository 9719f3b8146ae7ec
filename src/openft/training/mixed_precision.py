"""bf16 compute over a bf16 frozen base, with the LoRA adapters kept in fp32.

PEFT keeps adapters in fp32 over a bf16 base (AdamW's small updates would round away in bf16), and
without autocast each LoRA layer copies its bf16 input to fp32 and runs its two thin matmuls in
fp32, then the sum is copied back to bf16: on SmolLM2-135M on a CPU those copies and fp32 matmuls
cost a quarter of the step. Under bf16 autocast the adapter weights are cast to bf16 instead (a few
kilobytes, cached for the forward), the activations stay bf16, and the gradients still reach the
fp32 weights in fp32. That is what TRL's default ``bf16=True`` does, applied to a bf16 base.
A model whose base is fp32 (``openft/tiny-chat`` under ``dtype=auto``) runs as before, unchanged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

HALF_DTYPES = (torch.bfloat16, torch.float16)


def base_dtype(model: Any) -> torch.dtype:
    """The dtype of the model's frozen base weights (those of its input embeddings)."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    dtype: torch.dtype = causal_lm.get_input_embeddings().weight.dtype
    return dtype


def compute_precision(model: Any) -> AbstractContextManager[Any]:
    """Autocast to the base's dtype when that is a 16-bit one; no change for an fp32 base."""
    dtype = base_dtype(model)
    if dtype not in HALF_DTYPES:
        return nullcontext()
    device_type = next(model.parameters()).device.type
    return torch.autocast(device_type=device_type, dtype=dtype)


def keep_adapter_inputs_in_base_dtype(model: Any) -> None:
    """Stop PEFT from copying each LoRA layer's input to the adapter's fp32 (autocast casts the weights).

    Only for a 16-bit base whose forwards run under ``compute_precision``; a no-op otherwise.
    """
    if base_dtype(model) not in HALF_DTYPES:
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False  # type: ignore[attr-defined]  # declared by peft's layer classes
