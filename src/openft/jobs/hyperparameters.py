"""Resolution of ``"auto"`` hyperparameters, following OpenAI's published heuristics.

n_epochs: 3, raised for small data sets so training sees at least 100 examples, lowered for
big ones to stay under 25,000, within 1-25 (the cookbook's rule). batch_size: about 0.2% of the
examples, 1-256. learning_rate_multiplier: 1.0 (each base model carries its own LoRA learning
rate, calibrated at a multiplier of 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def auto_n_epochs(n_examples: int) -> int:
    n_epochs = TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        n_epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // max(n_examples, 1))
    elif n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        n_epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return n_epochs


def auto_batch_size(n_examples: int) -> int:
    return max(1, min(256, round(n_examples * 0.002)))


@dataclass(frozen=True)
class Resolved:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }


def resolve(requested: dict[str, Any], n_examples: int) -> Resolved:
    """Concrete values for a job's requested hyperparameters (``"auto"`` or absent -> heuristic)."""

    def pick(name: str, auto: Any) -> Any:
        value = requested.get(name)
        return auto if value in (None, "auto") else value

    return Resolved(
        n_epochs=int(pick("n_epochs", auto_n_epochs(n_examples))),
        batch_size=int(pick("batch_size", auto_batch_size(n_examples))),
        learning_rate_multiplier=float(pick("learning_rate_multiplier", 1.0)),
    )
