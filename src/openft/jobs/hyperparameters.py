"""Resolution of ``"auto"`` hyperparameters, following OpenAI's published heuristics.

n_epochs: 3, raised for small data sets so training sees at least 100 examples, lowered for
big ones to stay under 25,000, within 1-25 (the cookbook's rule). batch_size: about 0.2% of the
examples, 1-256. learning_rate_multiplier: 1.0 (each base model carries its own LoRA learning
rate, calibrated at a multiplier of 1). DPO adds beta: 0.1 under ``"auto"`` (the value DPO's authors
and TRL use; OpenAI documents only that higher is more conservative).

``benchmarks/learning_quality.py`` measures these rules against alternatives on held-out tasks
(``benchmarks/README.md``). On SmolLM2-135M with 100 examples, a batch-size floor of 4 with the
learning rate scaled by sqrt(4) lost 7.5 points on three of six tasks (and a doubled learning rate at
batch size 1 lost 20 on one), so batch size 1 and a multiplier of 1.0 stay for small files.
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


COMMON = ("batch_size", "learning_rate_multiplier", "n_epochs")
"""The hyperparameters every method has; the job object's top-level ``hyperparameters`` carry these."""
DEFAULT_DPO_BETA = 0.1


def resolve_dpo(requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """DPO's concrete hyperparameters: the common three plus ``beta``."""
    beta = requested.get("beta")
    beta = DEFAULT_DPO_BETA if beta in (None, "auto") else float(beta)
    return {**resolve(requested, n_examples).as_dict(), "beta": beta}


REASONING_EFFORTS = ("default", "low", "medium", "high")
AUTO_EVALUATIONS = 10


def resolve_reinforcement(requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """RFT's concrete hyperparameters: the common three plus ``compute_multiplier`` (auto: 1.0),
    ``eval_interval`` (auto: about ten evaluations over the run), ``eval_samples`` (auto: 1) and
    ``reasoning_effort`` (``default`` unless given)."""
    common = resolve(requested, n_examples).as_dict()

    def pick(name: str, auto: Any) -> Any:
        value = requested.get(name)
        return auto if value in (None, "auto") else value

    total_steps = common["n_epochs"] * -(-n_examples // common["batch_size"])
    return {
        **common,
        "compute_multiplier": float(pick("compute_multiplier", 1.0)),
        "eval_interval": int(pick("eval_interval", max(1, round(total_steps / AUTO_EVALUATIONS)))),
        "eval_samples": int(pick("eval_samples", 1)),
        "reasoning_effort": requested.get("reasoning_effort") or "default",
    }


METHOD_RESOLVERS: dict[str, Any] = {
    "supervised": lambda requested, n: resolve(requested, n).as_dict(),
    "dpo": resolve_dpo,
    "reinforcement": resolve_reinforcement,
}


def resolve_method(method: str, requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    """Concrete values of the hyperparameters of ``method`` (the common three for a method without its own)."""
    resolver = METHOD_RESOLVERS.get(method)
    if resolver is None:
        return {**requested, **resolve(requested, n_examples).as_dict()}
    return dict(resolver(requested, n_examples))
