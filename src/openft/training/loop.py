"""The training loop every recipe runs: optimizer, schedule, resume, save points, metrics, the end.

A recipe builds its model and data, then hands the loop two functions of its own method:

* a *train step* (``TrainStep``): forward and backward over the examples at some indices,
  returning the loss and the step's metrics; the loop clips the gradients and steps the optimizer;
* a *validation* (``Validate``): the validation fields of a step's metrics row, when one is due.

Around them the loop does what is the same for every method: AdamW (fused: one kernel over all
trainable tensors instead of a loop of small ops per tensor, ~2.5x faster on CPU) with linear
warmup then linear decay to 0, gradient clipping, a stop at the first non-finite loss
(``training/failures.py``), gradients averaged over data-parallel processes
(``training/gradient_sync.py``), one metrics line and ``results.csv`` row per step, and the save
points of ``training/checkpointing.py``: a servable checkpoint and a full state at each epoch's
end, a full state within an epoch when one is due, and a clean stop on SIGTERM. A run given
``spec.resume_from`` takes its place in the data, its history, every tensor and RNG from the saved
state, and ends with the same losses and weights as one never interrupted.

With early stopping (``training/early_stopping.py``) the loop also asks for the full validation
set every ``eval_every_steps`` steps (``full_evaluation_due``), checkpoints each new best step
(kept whatever ``keep_checkpoints`` says), stops when the loss has stopped improving, and ends
with the best checkpoint as the fine-tuned model.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from openft.training.checkpointing import Checkpointer, Progress, epoch_order, resume
from openft.training.common import save_adapter, write_results_csv
from openft.training.early_stopping import EarlyStopping
from openft.training.events import EventWriter
from openft.training.failures import check_loss
from openft.training.gradient_sync import sync_gradients
from openft.training.model_setup import TrainableModel
from openft.training.spec import TrainingSpec

MAX_GRAD_NORM = 1.0
AUTO_EVALUATIONS = 10
"""With no evaluation interval given, validate about this many times over the run."""
ADAPTER_DIR = "adapter"
RESULTS_CSV = "results.csv"


@dataclass
class StepResult:
    """What a recipe's train step reports; its backward has run, the optimizer has not stepped."""

    loss: float
    """The step's training loss (a non-finite one stops the run)."""
    metrics: dict[str, Any]
    """The ``train_*`` fields (and any other of the method's own) of the step's metrics row."""
    n_tokens: int
    """Tokens trained on in this step (what ``trained_tokens`` adds up)."""
    report: dict[str, Any] = field(default_factory=dict)
    """Fields for the metrics line only, not the history (``timing``, say)."""


TrainStep = Callable[[list[int]], StepResult]
"""Forward and backward over the training examples at these indices."""
Validate = Callable[[int, bool], dict[str, Any]]
"""``(step, epoch_end)`` -> the validation fields of that step's row; empty when none is due."""


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak rate for 0-based ``step``: linear warmup, then linear decay towards 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def epoch_steps(n_examples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last batch may be short)."""
    return math.ceil(n_examples / batch_size)


def interval(requested: int | None, total_steps: int) -> int:
    """Steps between evaluations: ``requested``, else about ``AUTO_EVALUATIONS`` over the run."""
    return requested or max(1, round(total_steps / AUTO_EVALUATIONS))


class TrainingLoop:
    """One run's optimizer, schedule, progress and save points (see the module docstring)."""

    def __init__(
        self,
        spec: TrainingSpec,
        events: EventWriter,
        trainable: TrainableModel,
        n_examples: int,
        *,
        started: float,
    ) -> None:
        """Build the optimizer and schedule, then resume from ``spec.resume_from`` when it is set.

        Args:
            spec: The job's spec (epochs, batch size, rates, save cadence, resume state).
            events: Where metrics, checkpoints, the result and a stop go.
            trainable: The model, its tokenizer and the parameters to train.
            n_examples: Training examples per epoch.
            started: ``time.perf_counter()`` when the run started (``elapsed_seconds`` counts from it).
        """
        self.spec, self.events, self.trainable = spec, events, trainable
        self.n_examples = n_examples
        self.steps_per_epoch = epoch_steps(n_examples, spec.batch_size)
        self.total_steps = spec.n_epochs * self.steps_per_epoch
        sync_gradients(trainable.trainable)  # data-parallel runs only; else a no-op
        self.optimizer = torch.optim.AdamW(trainable.trainable, lr=spec.learning_rate, weight_decay=0.0, fused=True)
        warmup_steps = round(spec.warmup_ratio * self.total_steps)
        total = self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, warmup_steps, total))
        fresh = Progress(total_steps=total, seed=spec.seed, n_examples=n_examples, batch_size=spec.batch_size)
        self.progress = resume(spec.resume_from, trainable.model, self.optimizer, self.scheduler, fresh, events)
        self.started = started - self.progress.elapsed_seconds
        self.output_dir = Path(spec.output_dir)
        self.checkpointer = Checkpointer(
            self.output_dir, every_steps=spec.save_state_every_steps, every_seconds=spec.save_state_every_seconds
        )
        self.checkpointer.install_stop_handler()
        self.early_stopping = EarlyStopping.of(spec)
        self.stopped_early_at: int | None = None

    @property
    def step(self) -> int:
        """Optimizer steps done so far (a resumed run starts where it stopped)."""
        return self.progress.step

    def full_evaluation_due(self, step: int, epoch_end: bool) -> bool:
        """Whether ``step``'s validation scores the whole validation set: at each epoch's end, and
        every ``eval_every_steps`` steps with early stopping."""
        return epoch_end or (self.early_stopping is not None and self.early_stopping.evaluation_due(step))

    def run(self, train_step: TrainStep, validate: Validate) -> bool:
        """Train the remaining epochs; False when a stop request ended the run at a save point.

        True also when early stopping ended the run before its last epoch (``stopped_early_at``).
        """
        spec, progress = self.spec, self.progress
        self.trainable.model.train()
        for epoch in range(progress.epoch, spec.n_epochs):
            order = epoch_order(self.n_examples, spec.seed, epoch)
            start = progress.position if epoch == progress.epoch else 0
            for first in range(start, len(order), spec.batch_size):
                epoch_end = first + spec.batch_size >= len(order)
                if self._step(train_step, validate, order[first : first + spec.batch_size], epoch, epoch_end):
                    return True  # early stopping: the best checkpoint is saved already
                # A full state within the epoch when due; a stop request (SIGTERM) also leaves a
                # servable checkpoint here, then ends the run cleanly.
                if not epoch_end and self._save_point(False, epoch, first + spec.batch_size, order):
                    return False
            if self._save_point(True, epoch + 1, 0, []):  # a servable checkpoint and a full state per epoch
                return False
        return True

    def _step(self, train_step: TrainStep, validate: Validate, indices: list[int], epoch: int, epoch_end: bool) -> bool:
        """One optimizer step, its metrics line and early stopping's verdict: True to stop now."""
        spec, progress = self.spec, self.progress
        step_started = time.perf_counter()
        result = train_step(indices)
        rate, multiplier = spec.learning_rate, spec.learning_rate_multiplier
        check_loss(result.loss, step=progress.step + 1, learning_rate=rate, multiplier=multiplier)
        torch.nn.utils.clip_grad_norm_(self.trainable.trainable, MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.trained_tokens += result.n_tokens
        progress.train_seconds += time.perf_counter() - step_started
        row: dict[str, Any] = {"step": progress.step, "total_steps": self.total_steps, "epoch": epoch + 1}
        row.update(result.metrics)
        row.update(validate(progress.step, epoch_end))
        progress.history.append(row)
        # tokens/s measures training steps only; elapsed_seconds is wall clock since the run started.
        self.events.metrics(
            **row,
            **result.report,
            trained_tokens=progress.trained_tokens,
            tokens_per_second=progress.trained_tokens / progress.train_seconds,
            elapsed_seconds=time.perf_counter() - self.started,
        )
        return self._observe(row)

    def _observe(self, row: dict[str, Any]) -> bool:
        """Early stopping's reading of a row with a full validation loss: checkpoint a best, say when to stop."""
        if self.early_stopping is None or row.get("full_valid_loss") is None:
            return False
        settings, progress, step = self.early_stopping, self.progress, row["step"]
        verdict = settings.observe(progress, step, row["full_valid_loss"])
        if verdict.best:
            self.save_checkpoint()
        if not verdict.stop or step >= self.total_steps:
            return False
        self.stopped_early_at = step
        self.events.message(
            f"Early stopping at step {step}/{self.total_steps}: the full validation loss has not improved by at "
            f"least {settings.min_delta:g} in {settings.patience} evaluations; the best, "
            f"{progress.best_valid_loss:.4f} at step {progress.best_step}, becomes the fine-tuned model",
            data={
                "stopped_early_at_step": step,
                "best_step": progress.best_step,
                "best_valid_loss": progress.best_valid_loss,
            },
        )
        return True

    def _save_point(self, epoch_end: bool, epoch: int, position: int, order: list[int]) -> bool:
        """Save what is due after this step; True when the run must stop now (a stop event is written)."""

        def save_state() -> None:
            progress = self.progress
            self.checkpointer.save(
                self.trainable.model,
                self.optimizer,
                self.scheduler,
                progress,
                epoch=epoch,
                position=position,
                epoch_order=order,
                elapsed_seconds=time.perf_counter() - self.started,
            )

        stopping = self.checkpointer.save_point(
            self.progress.step, epoch_end=epoch_end, save_checkpoint=self.save_checkpoint, save_state=save_state
        )
        if stopping:
            self.events.stopped(self.progress.step)
        return stopping

    def save_checkpoint(self) -> None:
        """A servable checkpoint at the current step; only the last ``keep_checkpoints`` stay on disk."""
        step, saved_steps = self.progress.step, self.progress.saved_steps
        if self.spec.keep_checkpoints <= 0 or not self.progress.history or (saved_steps and saved_steps[-1] == step):
            return
        path = f"checkpoints/step-{step}"
        save_adapter(self.trainable.model, self.trainable.tokenizer, self.output_dir / path)
        metrics = {k: v for k, v in self.progress.history[-1].items() if k not in ("total_steps", "epoch")}
        self.events.checkpoint(step=step, path=path, metrics=metrics)
        saved_steps.append(step)
        while len(saved_steps) > self.spec.keep_checkpoints:
            # The oldest, except the best step early stopping will serve.
            old = next((s for s in saved_steps if s != self.progress.best_step), None)
            if old is None:
                break
            saved_steps.remove(old)
            shutil.rmtree(self.output_dir / f"checkpoints/step-{old}", ignore_errors=True)
            self.events.checkpoint_deleted(old)

    def finish(self, *, extra_columns: Sequence[str] = (), **result: Any) -> None:
        """Save the final model and ``results.csv``, then write the ``result`` line (the run's last).

        With early stopping the final model is the best step's checkpoint, ``results.csv`` gains a
        ``full_valid_loss`` column and the result line an ``openft`` object (best step and loss, and
        the step the run stopped at, or None when it ran all its epochs).

        Args:
            extra_columns: The method's own ``results.csv`` columns, after OpenAI's five.
            result: The method's own fields of the result line (``hyperparameters``, say).
        """
        progress, adapter = self.progress, self.output_dir / ADAPTER_DIR
        best = self.output_dir / f"checkpoints/step-{progress.best_step}"
        if self.early_stopping is not None and progress.best_step is not None and best.is_dir():
            shutil.rmtree(adapter, ignore_errors=True)
            shutil.copytree(best, adapter)
            extra_columns = [*extra_columns, "full_valid_loss"]
            result["openft"] = {
                "best_step": progress.best_step,
                "best_valid_loss": progress.best_valid_loss,
                "stopped_early_at_step": self.stopped_early_at,
            }
        else:
            save_adapter(self.trainable.model, self.trainable.tokenizer, adapter)
        write_results_csv(progress.history, self.output_dir / RESULTS_CSV, extra_columns)
        self.events.result(
            adapter_path=ADAPTER_DIR,
            results_csv=RESULTS_CSV,
            trained_tokens=progress.trained_tokens,
            n_examples=self.n_examples,
            total_steps=self.total_steps,
            **result,
        )
