"""Reinforcement jobs: "auto" hyperparameters and the checks of method.reinforcement at creation."""

from __future__ import annotations

from typing import Any

import pytest

from openft.errors import InvalidRequest
from openft.jobs.hyperparameters import resolve_method
from openft.jobs.reinforcement import check_reinforcement_method

GRADER = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}", "reference": "x", "operation": "eq"}


def test_auto_resolves_every_rft_hyperparameter() -> None:
    resolved = resolve_method("reinforcement", {"batch_size": 5}, 50)
    # 50 examples -> 3 epochs (150 >= 100), 10 steps each: about ten evaluations -> every 3 steps.
    assert resolved == {
        "n_epochs": 3,
        "batch_size": 5,
        "learning_rate_multiplier": 1.0,
        "compute_multiplier": 1.0,
        "eval_interval": 3,
        "eval_samples": 1,
        "reasoning_effort": "default",
    }


def test_given_values_are_kept() -> None:
    requested = {"compute_multiplier": 2, "eval_interval": 7, "eval_samples": 3, "reasoning_effort": "high"}
    resolved = resolve_method("reinforcement", requested, 20)
    assert (resolved["compute_multiplier"], resolved["eval_interval"], resolved["eval_samples"]) == (2.0, 7, 3)
    assert resolved["reasoning_effort"] == "high"


def method(**section: Any) -> dict[str, Any]:
    return {"type": "reinforcement", "reinforcement": {"grader": GRADER, **section}}


def test_a_valid_method_gets_its_grader_normalised() -> None:
    checked = method()
    check_reinforcement_method(checked, "file-valid")
    assert checked["reinforcement"]["grader"] == GRADER


@pytest.mark.parametrize(
    ("checked", "validation_file", "param"),
    [
        (method(), None, "validation_file"),
        ({"type": "reinforcement", "reinforcement": {}}, "file-v", "method.reinforcement.grader"),
        (method(grader={**GRADER, "operation": "regex"}), "file-v", "method.reinforcement.grader"),
        (
            method(hyperparameters={"compute_multiplier": 0}),
            "file-v",
            "method.reinforcement.hyperparameters.compute_multiplier",
        ),
        (
            method(hyperparameters={"compute_multiplier": 11}),
            "file-v",
            "method.reinforcement.hyperparameters.compute_multiplier",
        ),
        (method(hyperparameters={"eval_interval": 0}), "file-v", "method.reinforcement.hyperparameters.eval_interval"),
        (method(hyperparameters={"eval_samples": 1.5}), "file-v", "method.reinforcement.hyperparameters.eval_samples"),
        (
            method(hyperparameters={"reasoning_effort": "max"}),
            "file-v",
            "method.reinforcement.hyperparameters.reasoning_effort",
        ),
    ],
)
def test_bad_methods_are_refused(checked: dict[str, Any], validation_file: str | None, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_reinforcement_method(checked, validation_file)
    assert caught.value.param == param
