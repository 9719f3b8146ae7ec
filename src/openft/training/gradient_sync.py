"""Gradients averaged over data-parallel processes (``training/distributed.py`` starts them)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def sync_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Average gradients of ``params`` across torch.distributed processes; a no-op in a single process.

    Call once, after the model is built and before training: rank 0's weights are broadcast, then a
    hook all-reduces each parameter's gradient as soon as backward has accumulated it.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()

    def average(param: torch.Tensor) -> None:
        assert param.grad is not None  # the hook runs after accumulation
        dist.all_reduce(param.grad)
        param.grad.div_(world)

    for param in params:
        dist.broadcast(param.data, src=0)
        param.register_post_accumulate_grad_hook(average)
