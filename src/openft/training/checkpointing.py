"""Full-state checkpoints: everything a training run needs to continue exactly where it stopped.

A servable checkpoint (``checkpoints/step-N``, one per epoch) holds only the adapter. Continuing a
run needs more: the trainable weights, the optimizer's moments, the LR scheduler, where the run is
in its data (epoch and position within the epoch; each epoch's order is derived from the seed, and
the order of the current epoch is stored too as a check), what it has reported so far (history,
tokens, kept checkpoints) and the random number generators (torch, Python, NumPy). A run started
with ``TrainingSpec.resume_from`` pointing at such a state ends with the same losses and weights as
one never interrupted.

Layout: ``{output_dir}/state/step-N/`` with ``tensors.pt`` (weights, optimizer, scheduler, torch
RNG) and ``progress.json`` (everything else). A save goes to ``state/.partial-step-N`` first, every
file fsync'ed, then one ``os.replace`` names it ``step-N``: only complete states carry that name, so
a kill in the middle of a save leaves the previous state as the latest. Only the newest is kept.

Cadence: a state is saved at the end of every epoch and, within an epoch, every
``save_state_every_steps`` steps when set, else every ``save_state_every_seconds`` of wall clock
(at least 20 times as long as the previous save took, so saving never costs more than about 5%
of training: a LoRA state is megabytes and takes milliseconds, a full fine-tune's state is three
copies of the weights). An epoch is too coarse on its own: on a real data set one epoch is hours,
and a crash would lose all of it.

Stopping: SIGTERM (what a pause, or a worker shutting down, sends) makes the run save a state and a
servable checkpoint at the end of the current step and exit cleanly, instead of dying mid-step.

This module imports torch only inside the functions that need it: the worker (which must never
import torch) uses :func:`latest_state_dir` to find what to resume from.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openft.training.protocol import PROGRESS_FILE, STATE_DIR, TENSORS_FILE

_PARTIAL = ".partial-"
SAVE_COST_FACTOR = 20
"""Time-based saves wait at least this many times the duration of the previous save."""


@dataclass
class Progress:
    """Where a run stands: enough, with the tensors, to continue it bit for bit."""

    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """0-based epoch the next step belongs to."""
    position: int = 0
    """Index, in the epoch's shuffled order, of the first example of the next step."""
    total_steps: int = 0
    seed: int = 0
    n_examples: int = 0
    batch_size: int = 0
    trained_tokens: int = 0
    train_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    """One metrics row per step so far (becomes ``results.csv``)."""
    saved_steps: list[int] = field(default_factory=list)
    """Steps of the servable checkpoints still on disk, oldest first."""
    epoch_order: list[int] = field(default_factory=list)
    """The shuffled order of the current epoch (a check that the data order is reproduced)."""
    best_step: int | None = None
    """Early stopping: the step of the lowest full validation loss so far (its checkpoint is kept)."""
    best_valid_loss: float | None = None
    evaluations_without_improvement: int = 0
    """Early stopping: full evaluations since the validation loss last improved by at least ``min_delta``."""

    def matches(self, other: Progress) -> bool:
        """Whether a saved state belongs to a run with the same data, batching and seed."""
        keys = ("total_steps", "seed", "n_examples", "batch_size")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss]}
    if "numpy" in sys.modules:  # only if something in the process uses it
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def trainable_tensors(model: Any) -> dict[str, Any]:
    """The parameters the optimizer updates (the LoRA matrices, or every weight in a full fine-tune)."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_state(output_dir: Path, model: Any, optimizer: Any, scheduler: Any, progress: Progress) -> Path:
    """Write a full state for ``progress.step`` atomically and drop older ones; returns its directory."""
    import torch

    root = output_dir / STATE_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{progress.step}"
    partial = root / f"{_PARTIAL}step-{progress.step}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    tensors = {
        "params": trainable_tensors(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with (partial / TENSORS_FILE).open("wb") as fh:
        torch.save(tensors, fh)
        fh.flush()
        os.fsync(fh.fileno())
    with (partial / PROGRESS_FILE).open("w") as fh:
        json.dump({"progress": asdict(progress), "rng": _rng_state()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(partial)
    if final.exists():  # the same step saved again (a resumed run redoing it): replace it
        shutil.rmtree(final)
    os.replace(partial, final)
    _fsync_dir(root)
    for old in root.iterdir():
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_progress(state_dir: Path) -> Progress:
    """The progress recorded in a state directory (no torch needed)."""
    data = json.loads((state_dir / PROGRESS_FILE).read_text())
    return Progress(**data["progress"])


def load_state(state_dir: Path, model: Any, optimizer: Any, scheduler: Any) -> Progress:
    """Put a saved state back into ``model``, ``optimizer``, ``scheduler`` and the RNGs.

    Raises:
        ValueError: the state's parameters do not match the model's trainable parameters.
    """
    import torch

    tensors = torch.load(state_dir / TENSORS_FILE, map_location="cpu", weights_only=True)
    data = json.loads((state_dir / PROGRESS_FILE).read_text())
    params = dict(model.named_parameters())
    saved = tensors["params"]
    expected = {name for name, p in params.items() if p.requires_grad}
    if set(saved) != expected:
        raise ValueError(f"the state in {state_dir} was saved for different trainable parameters")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(tensors["optimizer"])
    scheduler.load_state_dict(tensors["scheduler"])
    torch.set_rng_state(tensors["torch_rng"])
    if tensors["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda_rng"])
    _restore_rng(data["rng"])
    return Progress(**data["progress"])


class Checkpointer:
    """Decides when to save a full state, and turns SIGTERM into "save and stop after this step"."""

    def __init__(self, output_dir: Path, *, every_steps: int | None, every_seconds: float | None):
        self.output_dir = output_dir
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.stop_requested = False
        self._last_save = time.monotonic()
        self._last_cost = 0.0

    def install_stop_handler(self) -> None:
        """SIGTERM sets :attr:`stop_requested` instead of killing the process mid-step."""

        def request_stop(_signum: int, _frame: Any) -> None:
            self.stop_requested = True

        try:
            signal.signal(signal.SIGTERM, request_stop)
        except ValueError:  # not the main thread (a recipe called in-process): keep the default
            pass

    def due(self, step: int) -> bool:
        """Whether a state should be saved after ``step`` (a stop request always makes it due)."""
        if self.stop_requested:
            return True
        if self.every_steps:
            return step % self.every_steps == 0
        if self.every_seconds is None:
            return False
        wait = max(self.every_seconds, SAVE_COST_FACTOR * self._last_cost)
        return time.monotonic() - self._last_save >= wait

    def save_point(
        self, step: int, *, epoch_end: bool, save_checkpoint: Callable[[], None], save_state: Callable[[], None]
    ) -> bool:
        """After ``step``: save what is due, and say whether the run must now stop (everything is saved).

        At an epoch's end a servable checkpoint and a full state are always saved; within an epoch a
        full state when :meth:`due`, plus a servable checkpoint when a stop was requested. The stop
        flag is read once: a SIGTERM that lands during a save is honoured at the next save point,
        never as a stop without its checkpoint.
        """
        if not epoch_end and not self.due(step):
            return False
        stopping = self.stop_requested
        if stopping or epoch_end:
            save_checkpoint()
        save_state()
        return stopping

    def save(self, model: Any, optimizer: Any, scheduler: Any, progress: Progress, **where: Any) -> Path:
        """Update ``progress`` with ``where`` (step, epoch, position, ...) and save a full state."""
        for name, value in where.items():
            setattr(progress, name, value)
        started = time.monotonic()
        path = save_state(self.output_dir, model, optimizer, scheduler, progress)
        self._last_save = time.monotonic()
        self._last_cost = self._last_save - started
        return path


def resume(state_dir: str | None, model: Any, optimizer: Any, scheduler: Any, fresh: Progress, events: Any) -> Progress:
    """The progress to start from: ``fresh``, or the saved state in ``state_dir`` loaded into place.

    A state saved for other data, batching or seed is ignored (with a warning): the run starts over.
    """
    if not state_dir:
        return fresh
    saved = read_progress(Path(state_dir))
    if not saved.matches(fresh):
        events.message(
            f"The saved training state at step {saved.step} belongs to a different run; starting from step 0",
            level="warn",
        )
        return fresh
    progress = load_state(Path(state_dir), model, optimizer, scheduler)
    events.message(
        f"Resumed from step {progress.step}/{progress.total_steps} (epoch {progress.epoch + 1}) of an earlier attempt",
        data={"step": progress.step, "epoch": progress.epoch + 1},
    )
    return progress


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of ``epoch``: a function of the seed, so a resumed run reproduces it."""
    order = list(range(n_examples))
    random.Random(seed + epoch).shuffle(order)
    return order
