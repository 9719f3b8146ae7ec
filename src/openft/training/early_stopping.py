"""Early stopping: stop when the full validation loss has stopped improving, and keep the best step.

A job turns it on with ``method.<type>.openft.early_stopping`` (``eval_every_steps``, ``patience``,
``min_delta``; it needs a validation file). The full validation set is then scored every
``eval_every_steps`` steps, besides each epoch's end, and every such evaluation counts: a loss
lower than the best by at least ``min_delta`` is an improvement; after ``patience`` evaluations
without one the run stops. The best step is the one with the lowest full validation loss (a lower
loss that misses ``min_delta`` still becomes the best, it only does not reset the patience), and
its checkpoint is what the job serves. The counters live in the run's ``Progress``, so a resumed
run goes on counting where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from openft.training.checkpointing import Progress
from openft.training.spec import TrainingSpec


@dataclass(frozen=True)
class Verdict:
    """What one full evaluation means for the run."""

    best: bool
    """The loss is the lowest so far: checkpoint this step."""
    stop: bool
    """``patience`` evaluations in a row without an improvement: stop now."""


@dataclass(frozen=True)
class EarlyStopping:
    """The job's early-stopping settings."""

    eval_every_steps: int
    patience: int
    min_delta: float

    @classmethod
    def of(cls, spec: TrainingSpec) -> EarlyStopping | None:
        """The spec's settings, or None when the job did not ask for early stopping."""
        if spec.early_stopping_eval_every_steps is None:
            return None
        return cls(spec.early_stopping_eval_every_steps, spec.early_stopping_patience, spec.early_stopping_min_delta)

    def evaluation_due(self, step: int) -> bool:
        """Whether the full validation set is scored after ``step`` (epoch ends aside)."""
        return step % self.eval_every_steps == 0

    def observe(self, progress: Progress, step: int, valid_loss: float) -> Verdict:
        """Record the full validation loss of ``step`` in ``progress``."""
        best = progress.best_valid_loss
        if best is None or valid_loss < best - self.min_delta:
            progress.evaluations_without_improvement = 0
        else:
            progress.evaluations_without_improvement += 1
        lowest = best is None or valid_loss < best
        if lowest:
            progress.best_step, progress.best_valid_loss = step, valid_loss
        return Verdict(best=lowest, stop=progress.evaluations_without_improvement >= self.patience)
