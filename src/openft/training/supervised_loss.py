"""The supervised loss: mean cross-entropy over a packed row's trained tokens, and its evaluation.

The decoder runs over the packed row, then the LM head only at positions with a target, which
skips most of the head's cost (prompts, system messages); a frozen head and the loss run chunk by
chunk without ever holding all the logits (``training/linear_cross_entropy.py``). Over a bf16 base
the forward runs under bf16 autocast (``training/mixed_precision.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from openft.data.chat_data import IGNORE_INDEX, TokenizedExample
from openft.training.linear_cross_entropy import fusable_head, linear_cross_entropy
from openft.training.mixed_precision import compute_precision
from openft.training.packed_attention import packed_kwargs
from openft.training.packing import PackedBatch, pack


def batch_loss(model: Any, batch: PackedBatch) -> tuple[torch.Tensor, int, int]:
    """Mean cross-entropy over the batch's trained tokens, their count and how many argmax got right."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(causal_lm, causal_lm.base_model_prefix)
    head = causal_lm.get_output_embeddings()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    fused = not softcap and fusable_head(head)
    where = batch.targets != IGNORE_INDEX
    targets = batch.targets[where]
    n_tokens = int(targets.numel())
    with compute_precision(model):  # bf16 autocast over a bf16 base: see training/mixed_precision.py
        hidden = decoder(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            use_cache=False,
            **packed_kwargs(list(batch.lengths), batch.input_ids.device),
        ).last_hidden_state[where]
        logits = None if fused else head(hidden).float()
    if logits is None:
        loss_sum, correct = linear_cross_entropy(hidden, head.weight, targets)
    else:
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        correct = (logits.detach().argmax(dim=-1) == targets).sum()
    return loss_sum / max(n_tokens, 1), n_tokens, int(correct.item())


@torch.no_grad()
def evaluate(
    model: Any, examples: Sequence[TokenizedExample], batch_size: int, device: torch.device
) -> tuple[float, float]:
    """Token-weighted mean loss and accuracy of ``examples``, in eval mode (no dropout)."""
    model.eval()
    total_loss = 0.0
    total_tokens = total_correct = 0
    for first in range(0, len(examples), batch_size):
        loss, n_tokens, n_correct = batch_loss(model, pack(examples[first : first + batch_size], device))
        total_loss += float(loss.item()) * n_tokens
        total_tokens += n_tokens
        total_correct += n_correct
    model.train()
    return total_loss / max(total_tokens, 1), total_correct / max(total_tokens, 1)
