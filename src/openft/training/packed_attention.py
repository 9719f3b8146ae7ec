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
drives ``flash_attention_2`` where that is installed.

On a CPU, bf16 queries, keys and values of most examples are computed on in fp32, because the CPU
flash kernel (forward + backward) is slower in bf16 than in fp32 unless the CPU has AMX, the heads
are wide and the example is long. Measured on a 2-core Xeon with AMX, one causal GQA call, bf16 time
over fp32 time: head size 16 (tiny-chat), 5.4x at 64 tokens, 2.3x at 600, 1.5x at 1,000; head size
64 (SmolLM2), 3.2x at 64 tokens, 1.1x at 300, 0.94x at 600, 0.78x at 1,000. Without AMX (2-core
EPYC with AVX512-BF16) fp32 was faster at every length up to ~600 tokens, 2-3x below 128. fp32 is
also the more exact of the two.
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
    boundaries = kwargs.get("cu_seq_lens_q")
    lengths = [query.shape[2]] if boundaries is None else torch.diff(boundaries).tolist()
    examples = _split_examples(query, key, value, lengths)
    if dtype != torch.float32 and query.device.type == "cpu":
        narrow = [i for i, n in enumerate(lengths) if not _cpu_bf16_attention_pays(n, query.shape[-1])]
        if narrow:
            as_fp32 = _split_examples(query.float(), key.float(), value.float(), lengths)
            for i in narrow:
                examples[i] = as_fp32[i]
    gqa = query.shape[1] != key.shape[1]
    outputs = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa)
        for q, k, v in examples
    ]
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)  # promotes a bf16/fp32 mix to fp32
    return out.transpose(1, 2).to(dtype).contiguous(), None


def _split_examples(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    splits = (t.split(lengths, dim=2) for t in (query, key, value))
    return list(zip(*splits, strict=True))


BF16_ATTENTION_MIN_HEAD_DIM = 64
BF16_ATTENTION_MIN_LENGTH = 512
"""Below these, fp32 attention beats bf16 on a CPU even with AMX (see the module docstring)."""


def _cpu_bf16_attention_pays(length: int, head_dim: int) -> bool:
    return _cpu_has_amx() and head_dim >= BF16_ATTENTION_MIN_HEAD_DIM and length >= BF16_ATTENTION_MIN_LENGTH


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
