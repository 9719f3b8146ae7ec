"""Early stopping's rule (training/early_stopping.py): the best step, the patience, min_delta."""

from __future__ import annotations

from openft.training.checkpointing import Progress
from openft.training.early_stopping import EarlyStopping


def observe_all(rule: EarlyStopping, losses: list[float]) -> tuple[Progress, list[tuple[bool, bool]]]:
    progress = Progress()
    verdicts = []
    for i, loss in enumerate(losses, start=1):
        verdict = rule.observe(progress, i * rule.eval_every_steps, loss)
        verdicts.append((verdict.best, verdict.stop))
    return progress, verdicts


def test_stops_after_patience_evaluations_without_improvement() -> None:
    progress, verdicts = observe_all(EarlyStopping(eval_every_steps=5, patience=2, min_delta=0.0), [3.0, 2.0, 2.5, 2.4])
    assert verdicts == [(True, False), (True, False), (False, False), (False, True)]
    assert (progress.best_step, progress.best_valid_loss) == (10, 2.0)


def test_an_improvement_resets_the_patience() -> None:
    _, verdicts = observe_all(EarlyStopping(eval_every_steps=1, patience=2, min_delta=0.0), [3.0, 3.1, 2.9, 3.0, 3.2])
    assert [stop for _, stop in verdicts] == [False, False, False, False, True]


def test_a_lower_loss_short_of_min_delta_is_the_best_but_not_an_improvement() -> None:
    progress, verdicts = observe_all(EarlyStopping(eval_every_steps=2, patience=2, min_delta=0.1), [3.0, 2.95, 2.93])
    assert verdicts == [(True, False), (True, False), (True, True)]
    assert (progress.best_step, progress.best_valid_loss) == (6, 2.93)  # the lowest is what is served


def test_evaluation_due_every_n_steps() -> None:
    rule = EarlyStopping(eval_every_steps=3, patience=1, min_delta=0.0)
    assert [step for step in range(1, 10) if rule.evaluation_due(step)] == [3, 6, 9]
