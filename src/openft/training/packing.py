"""Examples packed into one row, the input of every packed forward (supervised and DPO).

A packed row concatenates ``batch_size`` examples with no padding: position ids restart at 0 for
each example, attention runs within each example alone (``training/packed_attention.py``; a model
that cannot take it gets the block-diagonal causal mask transformers builds from the position ids)
and the forward runs with ``use_cache=False`` (with a cache, the mask path silently attends across
examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from openft.data.chat_data import IGNORE_INDEX, TokenizedExample
from openft.training.mixed_precision import keep_adapter_inputs_in_base_dtype
from openft.training.packed_attention import use_packed_attention


@dataclass(frozen=True)
class PackedBatch:
    """Examples concatenated into one row of shape ``(1, n_tokens)``."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    """Restart at 0 for each example, which is how the model tells the examples apart."""
    targets: torch.Tensor
    """The label of the next token within the same example, ``-100`` where nothing is trained."""
    n_tokens: int
    lengths: tuple[int, ...] = ()
    """Tokens of each example, in row order: the boundaries packed attention needs."""


def pack(examples: Sequence[TokenizedExample], device: torch.device | str = "cpu") -> PackedBatch:
    """Pack examples into one row for a ``use_cache=False`` forward (see the module docstring)."""
    input_ids: list[int] = []
    position_ids: list[int] = []
    targets: list[int] = []
    for example in examples:
        input_ids += example.input_ids
        position_ids += range(len(example.input_ids))
        # Shift within the example, so no position predicts the first token of the next one.
        targets += [*example.labels[1:], IGNORE_INDEX]

    def row(values: list[int]) -> torch.Tensor:
        return torch.tensor([values], dtype=torch.long, device=device)

    lengths = tuple(len(example.input_ids) for example in examples)
    return PackedBatch(row(input_ids), row(position_ids), row(targets), len(input_ids), lengths)


def prepare_for_packed_rows(model: Any) -> None:
    """Attention example by example with no mask, and LoRA inputs left in a 16-bit base's dtype.

    Both are what make a packed step fast: see ``training/packed_attention.py`` and
    ``training/mixed_precision.py``. Only for models whose forwards take packed rows.
    """
    use_packed_attention(model)
    keep_adapter_inputs_in_base_dtype(model)
