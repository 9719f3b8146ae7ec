"""Attention over a packed row, one example at a time: cost grows with each example's length squared.

A packed row (``recipes/supervised.py``: ``batch_size`` examples in one row, position ids restarting
at 0) must never let an example attend to another. transformers' SDPA path gets there with a
block-diagonal mask built from the position ids: a dense ``n x n`` mask per forward, and attention
over the whole row with most of it masked away. On a CPU that is most of a step: with 8 examples of
~600 tokens, that attention and its mask took 98 % of tiny-chat's step time (torch.profiler).

``PACKED_SDPA`` computes what the mask describes, directly: for each example, causal SDPA over
that example's tokens alone (``is_causal=True`` runs the flash kernel, which skips masked blocks
instead of computing and discarding them), and no mask is built at all (transformers builds none
for an attention implementation it has no mask function for). The example boundaries arrive as
the FlashAttention varlen keywords (``cu_seq_lens_q``/``cu_seq_lens_k``), so the same call also
drives ``flash_attention_2`` where that is installed. On a CPU without AMX, bf16 queries, keys and
values are computed on in fp32: there the CPU flash kernel is slower in bf16 than in fp32 at every
example length up to ~600 tokens (2-3x below 128 tokens), and fp32 is the more exact of the two.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

PACKED_SDPA = "openft_packed_sdpa"
"""The attention implementation name that ``use_packed_attention`` sets on a model."""


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each example of a packed row of shape ``(1, heads, n, head_dim)``.

    ``kwargs["cu_seq_lens_q"]`` holds the example boundaries (``[0, len_0, len_0 + len_1, ..., n]``);
    without it the row is one sequence.

    Returns:
        The attention output as ``(1, n, heads, head_dim)`` (the layout transformers' attention
        functions return) and no attention weights.

    Raises:
        ValueError: The row is not a single packed row, or an attention mask was given (padding has
            no place in a packed row).
    """
    if query.shape[0] != 1 or attention_mask is not None:
        raise ValueError("packed attention takes one packed row and no attention mask")
    if kwargs.get("sliding_window") or kwargs.get("softcap") or kwargs.get("is_causal") is False:
        raise ValueError("packed attention is plain causal attention: no sliding window, softcap or bidirectional")
    dtype = query.dtype
    if dtype != torch.float32 and query.device.type == "cpu" and not _cpu_has_amx():
        query, key, value = query.float(), key.float(), value.float()
    boundaries = kwargs.get("cu_seq_lens_q")
    lengths = [query.shape[2]] if boundaries is None else torch.diff(boundaries).tolist()
    gqa = query.shape[1] != key.shape[1]
    outputs = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for q, k, v in zip(
            query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2), strict=True
        )
    ]
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return out.transpose(1, 2).to(dtype).contiguous(), None


@functools.cache
def _cpu_has_amx() -> bool:
    """Without AMX, the CPU flash kernel is faster in fp32 than in bf16 at every length up to ~600 tokens."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)


def use_packed_attention(model: Any) -> bool:
    """Make ``model`` (a transformers model, or a PEFT model around one) attend example by example.

    Only a model on transformers' SDPA attention with plain causal attention switches (no sliding
    window, no logit softcap); any other keeps its own attention, which handles packed rows through
    the mask it builds from the position ids. Either way the forward takes ``packed_kwargs``.

    Returns:
        Whether the model now uses ``PACKED_SDPA``.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = causal_lm.config
    plain = getattr(config, "sliding_window", None) is None and not getattr(config, "attn_logit_softcapping", None)
    if config._attn_implementation != "sdpa" or not plain or not causal_lm._can_set_attn_implementation():
        return False
    causal_lm.set_attn_implementation(PACKED_SDPA)
    return bool(config._attn_implementation == PACKED_SDPA)


def packed_kwargs(lengths: list[int], device: torch.device | str) -> dict[str, Any]:
    """The varlen keywords for a packed row of examples of ``lengths`` tokens (FlashAttention's names)."""
    if not lengths:
        return {}
    boundaries = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32).to(device)
    longest = max(lengths)
    return {
        "cu_seq_lens_q": boundaries,
        "cu_seq_lens_k": boundaries,
        "max_length_q": longest,
        "max_length_k": longest,
    }
