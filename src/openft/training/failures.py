"""Why a training run failed, as the ``error.code`` and message the job shows.

A recipe raises :class:`TrainingFailure` (or a subclass) for failures it can name; anything else
that escapes a recipe is classified by :func:`describe_failure` (out of memory is recognised from
torch's exceptions), so a job never fails with a bare traceback as its only explanation.
"""

from __future__ import annotations

import math


class TrainingFailure(Exception):
    """A failure the user can understand and act on; ``code`` becomes the job's ``error.code``."""

    code = "training_failed"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.param = param


class LossNotFinite(TrainingFailure):
    """The loss became NaN or infinite: the run diverged, almost always from too high a learning rate."""

    code = "nan_loss"


def check_loss(value: float, *, step: int, learning_rate: float, multiplier: float) -> None:
    """Stop a diverged run at its first non-finite loss instead of training on garbage.

    Raises:
        LossNotFinite: ``value`` is NaN or infinite.
    """
    if math.isfinite(value):
        return
    raise LossNotFinite(
        f"The training loss became {value} at step {step}: training diverged. The learning rate "
        f"({learning_rate:g}, learning_rate_multiplier {multiplier:g}) is probably too high; "
        "retry with a lower learning_rate_multiplier.",
        param="hyperparameters.learning_rate_multiplier",
    )


OUT_OF_MEMORY_MARKERS = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


def describe_failure(exc: BaseException) -> tuple[str, str, str | None]:
    """``(code, message, param)`` for an exception that ended a training run."""
    if isinstance(exc, TrainingFailure):
        return exc.code, str(exc), exc.param
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(marker in str(exc).lower() for marker in OUT_OF_MEMORY_MARKERS)
    ):
        return (
            "out_of_memory",
            f"The model and its training state do not fit in memory ({text[:500]}). Use a smaller "
            "batch_size, a smaller model, LoRA instead of full fine-tuning, or a machine with more memory.",
            None,
        )
    return "training_failed", text, None
