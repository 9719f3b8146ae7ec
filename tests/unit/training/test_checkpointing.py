"""Full-state checkpoints: a round trip restores weights, optimizer, scheduler and RNGs; a save cut
short never becomes the latest; a diverged loss and an out-of-memory error get their own codes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from openft.training.checkpointing import Checkpointer, Progress, load_state, save_state
from openft.training.failures import LossNotFinite, check_loss, describe_failure
from openft.training.protocol import latest_state_dir


def _setup(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    return model, optimizer, scheduler


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(3, 4)  # draws from the RNG, so a wrong RNG state changes the result
        model(x).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()  # type: ignore[attr-defined]
        optimizer.zero_grad()


def test_resuming_from_a_state_continues_bit_for_bit(tmp_path: Path) -> None:
    whole = _setup(0)
    _train(*whole, steps=6)

    first = _setup(0)
    _train(*first, steps=3)
    random.random()
    save_state(tmp_path, *first, Progress(step=3, epoch=0, position=3, history=[{"step": 1}]))
    expected_python = random.random()

    second = _setup(1)  # different initial weights and RNG: everything must come from the state
    state = latest_state_dir(tmp_path)
    assert state is not None and state.name == "step-3"
    progress = load_state(state, *second)
    assert (progress.step, progress.position, progress.history) == (3, 3, [{"step": 1}])
    assert random.random() == expected_python
    _train(*second, steps=3)
    for a, b in zip(whole[0].parameters(), second[0].parameters(), strict=True):
        assert torch.equal(a, b)


def test_only_complete_states_count_and_only_the_newest_is_kept(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(0)
    save_state(tmp_path, model, optimizer, scheduler, Progress(step=2))
    save_state(tmp_path, model, optimizer, scheduler, Progress(step=4))
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["step-4"]
    # A save killed midway leaves a partial directory (or one missing a file): never the latest.
    (tmp_path / "state/.partial-step-6").mkdir()
    (tmp_path / "state/step-8").mkdir()
    state = latest_state_dir(tmp_path)
    assert state is not None and state.name == "step-4"


def test_a_non_finite_loss_is_a_named_failure() -> None:
    check_loss(2.5, step=1, learning_rate=1e-3, multiplier=1.0)
    with pytest.raises(LossNotFinite) as caught:
        check_loss(float("nan"), step=7, learning_rate=1e27, multiplier=1e30)
    code, message, param = describe_failure(caught.value)
    assert code == "nan_loss" and "step 7" in message and param == "hyperparameters.learning_rate_multiplier"


def test_out_of_memory_is_recognised() -> None:
    code, message, _ = describe_failure(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate"))
    assert code == "out_of_memory" and "batch_size" in message
    assert describe_failure(ValueError("bad"))[0] == "training_failed"


def test_a_stop_requested_during_a_save_is_honoured_at_the_next_save_point_with_its_checkpoint(
    tmp_path: Path,
) -> None:
    checkpointer = Checkpointer(tmp_path, every_steps=3, every_seconds=None)
    saved: list[str] = []

    def save_state_then_get_sigterm() -> None:
        saved.append("state")
        checkpointer.stop_requested = True  # SIGTERM lands while the periodic state is written

    assert not checkpointer.save_point(
        2, epoch_end=False, save_checkpoint=lambda: saved.append("ckpt"), save_state=lambda: saved.append("state")
    )
    assert saved == []  # nothing due
    assert not checkpointer.save_point(
        3, epoch_end=False, save_checkpoint=lambda: saved.append("ckpt"), save_state=save_state_then_get_sigterm
    )
    assert saved == ["state"]  # not a stop yet: this save point wrote no checkpoint
    assert checkpointer.save_point(
        4, epoch_end=False, save_checkpoint=lambda: saved.append("ckpt"), save_state=lambda: saved.append("state")
    )
    assert saved == ["state", "ckpt", "state"]


def test_an_epoch_end_always_saves_both() -> None:
    checkpointer = Checkpointer(Path("/nonexistent"), every_steps=None, every_seconds=None)
    saved: list[str] = []
    assert not checkpointer.save_point(
        7, epoch_end=True, save_checkpoint=lambda: saved.append("ckpt"), save_state=lambda: saved.append("state")
    )
    assert saved == ["ckpt", "state"]
