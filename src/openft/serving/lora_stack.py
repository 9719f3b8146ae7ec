"""Stacked LoRA: rows of different adapters (and of the plain base) in one forward pass, at about the cost of one.

Every linear layer that some loaded adapter targets is wrapped in a ``StackedLoraLinear``. It computes
the base output once for the whole batch and adds each row's low-rank update ``x A^T B^T s`` with
batched matmuls over the weights of the adapters in the batch, as Punica and S-LoRA do, instead of
PEFT's loop over adapters (gather the rows, two matmuls, scatter back, per adapter and layer):

* **one adapter** in the batch: ``y += (x A^T) (B^T s)``, two matmuls;
* **a few adapters** (up to ``dense_max_adapters``): their ``A`` stacked into one ``[n * r, in]``
  matrix and ``B`` into one ``[n * r, out]``: one matmul gives every row its product with every
  adapter's ``A``, a per-row mask keeps the columns of the row's own adapter (none for base rows),
  and one more matmul adds ``B``. Extra work grows with ``n * r``, tiny next to the base layer for
  the few adapters a small batch mixes, and there is no per-row copy of weights;
* **many adapters**: each row's own ``A`` and ``B`` are gathered (``A[ids]``, ``B[ids]``) and applied
  with two ``bmm``\\s, so the work no longer grows with the number of adapters.

Adapters of different ranks are zero-padded to the largest rank of the batch's adapters; a layer an
adapter does not target has zeros in its place. Stacked weights are built when a batch first mixes
adapters (over its adapters, topped up with the most recently used others to ``dense_max_adapters``)
and kept, so that later batches whose adapters are among them reuse them as requests come and go;
loading or removing an adapter drops them. Dropout does not exist at inference.

Not thread-safe: the base model's engine thread is its only user.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from openft.serving.lora_weights import LoraWeights

DENSE_MAX_ADAPTERS = 4
"""Most adapters in one batch applied by the masked dense product; more are gathered per row."""

_KEPT_STACKS = 4
"""Sets of adapters whose stacked weights are kept (least recently used out)."""


@dataclass
class _Selection:
    """What every wrapped layer applies in the next forward pass (shared by all of them)."""

    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """Module path -> ``A`` and ``B^T s``: ``[r, in]``/``[r, out]`` (dense) or ``[n + 1, r, in]``/``[n + 1, r, out]``
    (gathered, the last slot zeros for base rows)."""
    mask: torch.Tensor | None = None
    """Dense with several adapters: ``[rows, 1, n * r]``, ones on the columns of each row's adapter."""
    index: torch.Tensor | None = None
    """Gathered: each row's slot."""


@dataclass
class _Stack:
    """The weights of one set of adapters, stacked and zero-padded to one rank."""

    slots: dict[str, int]
    """Adapter name -> its slot."""
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """Module path -> ``[n + 1, r, in]`` and ``[n + 1, r, out]`` (slot ``n``: zeros, for base rows)."""
    dense: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """The same weights as ``[n * r, in]`` and ``[n * r, out]`` views, base slot left out."""
    blocks: torch.Tensor
    """``[n + 1, n * r]``: row ``k`` has ones on adapter ``k``'s columns, row ``n`` none."""


class StackedLoraLinear(torch.nn.Module):
    """A base ``nn.Linear`` plus the per-row LoRA updates of its stack's current selection."""

    def __init__(self, base_layer: torch.nn.Linear, path: str, stack: LoraStack) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.path = path
        self.stack = stack

    @property
    def weight(self) -> torch.Tensor:  # get_output_embeddings().weight and the like see the base layer's
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base_layer(x)
        selection = self.stack.selection
        if selection is None:
            return y
        pair = selection.layers.get(self.path)
        if pair is None:
            return y
        a, bt = pair
        if selection.index is not None:  # gathered: each row's own weights
            rows = x.reshape(x.shape[0], -1, x.shape[-1])
            h = torch.bmm(rows, a[selection.index].transpose(1, 2))
            return y.reshape(h.shape[0], h.shape[1], -1).baddbmm_(h, bt[selection.index]).reshape(y.shape)
        h = torch.nn.functional.linear(x, a)
        if selection.mask is not None:
            h = h * selection.mask
        y.view(-1, y.shape[-1]).addmm_(h.view(-1, h.shape[-1]), bt)  # in place: y is this layer's fresh output
        return y


class LoraStack:
    """The LoRA adapters loaded onto one base model, applied per row (see the module docstring).

    Args:
        model: The base ``PreTrainedModel``; its targeted ``nn.Linear`` layers are wrapped in place
            while any adapter is loaded, and restored when the last one goes.
        dense_max_adapters: Most adapters in one batch applied by the masked dense product.
    """

    def __init__(self, model: Any, *, dense_max_adapters: int = DENSE_MAX_ADAPTERS) -> None:
        self.model = model
        self.dense_max_adapters = dense_max_adapters
        self.selection: _Selection | None = None
        """Read by every wrapped layer during a forward pass; set by ``select``."""
        self._adapters: OrderedDict[str, LoraWeights] = OrderedDict()
        """Least recently selected first."""
        self._wrapped: dict[str, Any] = {}
        self._stacks: OrderedDict[tuple[str, ...], _Stack] = OrderedDict()
        """Kept stacks by their adapters, least recently used first."""

    def __contains__(self, name: str) -> bool:
        return name in self._adapters

    def add(self, name: str, weights: LoraWeights) -> None:
        """Load (or replace) adapter ``name``, wrapping the layers it targets."""
        for path in weights.layers:
            if path not in self._wrapped:
                parent, _, child = path.rpartition(".")
                owner = self.model.get_submodule(parent)
                wrapper = StackedLoraLinear(getattr(owner, child), path, self)
                setattr(owner, child, wrapper)
                self._wrapped[path] = wrapper
        self._adapters[name] = weights
        self._stacks.clear()
        self.selection = None

    def remove(self, name: str) -> None:
        """Drop adapter ``name`` (unknown names are ignored); the last one leaves the plain model."""
        if self._adapters.pop(name, None) is None:
            return
        self._stacks.clear()
        self.selection = None
        if not self._adapters:
            for path, wrapper in self._wrapped.items():
                parent, _, child = path.rpartition(".")
                setattr(self.model.get_submodule(parent), child, wrapper.base_layer)
            self._wrapped.clear()

    def select(self, adapters: list[str | None]) -> None:
        """Set each row's adapter (None: the plain base) for the forward passes that follow.

        Raises:
            KeyError: A name that is not loaded.
        """
        names = {name for name in adapters if name is not None}
        for name in names:
            self._adapters.move_to_end(name)
        if not names:
            self.selection = None
        elif len(set(adapters)) == 1:  # every row on one adapter: no mask, no stacking
            self.selection = _Selection(layers=self._adapters[next(iter(names))].layers)
        else:
            stack = self._stack(names)
            n = len(stack.slots)
            index = torch.tensor([n if a is None else stack.slots[a] for a in adapters], device=stack.blocks.device)
            if n <= self.dense_max_adapters:
                self.selection = _Selection(layers=stack.dense, mask=stack.blocks[index].unsqueeze(1))
            else:
                self.selection = _Selection(layers=stack.layers, index=index)

    def apply(self, path: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` (the base output of layer ``path`` for input ``x``) plus each row's update under the
        current selection; ``y`` itself when no selected adapter targets ``path``.

        What ``StackedLoraLinear`` computes, for forwards that run the base matmul themselves
        (``fast_decode``, with fused projections whose outputs are views): ``y`` is not written to.
        """
        selection = self.selection
        if selection is None:
            return y
        pair = selection.layers.get(path)
        if pair is None:
            return y
        a, bt = pair
        if selection.index is not None:
            rows = x.reshape(x.shape[0], -1, x.shape[-1])
            h = torch.bmm(rows, a[selection.index].transpose(1, 2))
            flat = y.reshape(h.shape[0], h.shape[1], -1)
            return torch.baddbmm(flat, h, bt[selection.index]).reshape(y.shape)
        h = torch.nn.functional.linear(x, a)
        if selection.mask is not None:
            h = h * selection.mask
        return torch.addmm(y.reshape(-1, y.shape[-1]), h.reshape(-1, h.shape[-1]), bt).reshape(y.shape)

    def _stack(self, names: set[str]) -> _Stack:
        """A stack holding ``names``: a kept one if any holds them all, else a new one.

        A new stack for a few adapters is filled up to ``dense_max_adapters`` with the most recently
        used others, so that the batch's adapters coming and going reuse it rather than copy weights.
        """
        for key, stack in reversed(self._stacks.items()):
            if names.issubset(stack.slots):
                self._stacks.move_to_end(key)
                return stack
        chosen = sorted(names)
        if len(chosen) < self.dense_max_adapters:
            others = [name for name in reversed(self._adapters) if name not in names]
            chosen += others[: self.dense_max_adapters - len(chosen)]
        key = tuple(chosen)
        stack = _build_stack({name: self._adapters[name] for name in key}, self._wrapped)
        self._stacks[key] = stack
        while len(self._stacks) > _KEPT_STACKS:
            self._stacks.popitem(last=False)
        return stack


def _build_stack(adapters: dict[str, LoraWeights], wrapped: dict[str, Any]) -> _Stack:
    n, rank = len(adapters), max(w.rank for w in adapters.values())
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for path in wrapped:
        targeting = [(k, w.layers[path]) for k, w in enumerate(adapters.values()) if path in w.layers]
        if not targeting:
            continue
        a0, bt0 = targeting[0][1]
        a = a0.new_zeros((n + 1, rank, a0.shape[1]))
        bt = bt0.new_zeros((n + 1, rank, bt0.shape[1]))
        for k, (ak, btk) in targeting:
            a[k, : ak.shape[0]] = ak
            bt[k, : btk.shape[0]] = btk
        layers[path] = (a, bt)
    first = next(iter(next(iter(adapters.values())).layers.values()))[0]
    blocks = torch.zeros((n + 1, n * rank), dtype=first.dtype, device=first.device)
    for k in range(n):
        blocks[k, k * rank : (k + 1) * rank] = 1
    dense = {path: (a[:n].flatten(0, 1), bt[:n].flatten(0, 1)) for path, (a, bt) in layers.items()}
    return _Stack(slots={name: k for k, name in enumerate(adapters)}, layers=layers, dense=dense, blocks=blocks)
