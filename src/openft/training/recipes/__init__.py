"""Training recipes: one module per fine-tuning method, each with ``run(spec, events) -> None``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openft.training.events import EventWriter
    from openft.training.spec import TrainingSpec

Recipe = Callable[["TrainingSpec", "EventWriter"], None]


def _supervised(spec: TrainingSpec, events: EventWriter) -> None:
    from openft.training.recipes import supervised  # imports torch: only when a run starts

    supervised.run(spec, events)


def _dpo(spec: TrainingSpec, events: EventWriter) -> None:
    from openft.training.recipes import dpo

    dpo.run(spec, events)


def _reinforcement(spec: TrainingSpec, events: EventWriter) -> None:
    from openft.training.recipes import reinforcement

    reinforcement.run(spec, events)


RECIPES: dict[str, Recipe] = {"supervised": _supervised, "dpo": _dpo, "reinforcement": _reinforcement}
"""Method name (``TrainingSpec.method``) -> recipe."""
