"""The key/value cache of a running batch: rows joined (left-padded) and rows dropped, between steps.

Works on transformers' ``DynamicCache`` (and ``fast_decode.KVCache``) whose layers hold plain
``[batch, heads, length, dim]`` ``keys``/``values`` tensors; other caches (sliding windows...) are not
``joinable`` and a new request then waits until the running batch has finished. Rows are left-padded:
the 2-D attention mask has a 0 for every padding column, and each row's position ids are tracked by
the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def joinable(cache: Any) -> bool:
    """Whether new rows can be merged into ``cache`` (None: no running batch)."""
    return cache is None or all(type(layer).__name__ in ("DynamicLayer", "KVLayer") for layer in cache.layers)


def merge(cache: Any, mask: torch.Tensor, new_cache: Any, new_mask: torch.Tensor) -> torch.Tensor:
    """Append ``new_cache``'s rows to ``cache`` (in place), both left-padded to one length; the joint mask."""
    import torch

    width = max(mask.shape[1], new_mask.shape[1])
    for old, new in zip(cache.layers, new_cache.layers, strict=True):
        old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)], dim=0)
        old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)], dim=0)
    return torch.cat([_pad_left(mask, width, dim=1), _pad_left(new_mask, width, dim=1)], dim=0)


def select(cache: Any, mask: torch.Tensor, keep: list[int]) -> torch.Tensor:
    """Keep only the rows ``keep`` of ``cache`` (in place); their mask.

    Columns that every remaining row has as padding are dropped too, so that a long-running batch
    does not carry the padding of rows long gone.
    """
    import torch

    index = torch.tensor(keep, device=mask.device)
    cache.batch_select_indices(index)
    mask = mask[index]
    first = int(mask.any(dim=0).nonzero()[0])
    if first > 0:
        mask = mask[:, first:]
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
    return mask


def _pad_left(tensor: torch.Tensor, width: int, dim: int = -2) -> torch.Tensor:
    import torch

    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)
