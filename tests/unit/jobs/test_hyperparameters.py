"""The "auto" hyperparameter rule (OpenAI cookbook heuristic)."""

from __future__ import annotations

import pytest

from openft.jobs.hyperparameters import auto_batch_size, auto_n_epochs, resolve


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (1, 25),
        (4, 25),
        (5, 20),
        (10, 10),
        (12, 8),
        (33, 3),
        (34, 3),
        (100, 3),
        (8333, 3),
        (8334, 2),
        (12_500, 2),
        (25_000, 1),
        (100_000, 1),
    ],
)
def test_auto_n_epochs(n: int, epochs: int) -> None:
    assert auto_n_epochs(n) == epochs


def test_auto_batch_size_is_small_for_small_sets_and_capped() -> None:
    assert auto_batch_size(10) == 1 and auto_batch_size(100) == 1
    assert auto_batch_size(5000) == 10 and auto_batch_size(10_000_000) == 256


def test_resolve_keeps_explicit_values_and_fills_auto() -> None:
    r = resolve({"n_epochs": "auto", "batch_size": 4, "learning_rate_multiplier": "auto"}, 20)
    assert (r.n_epochs, r.batch_size, r.learning_rate_multiplier) == (5, 4, 1.0)
    r = resolve({}, 64)
    assert r.as_dict() == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.0}
    assert resolve({"learning_rate_multiplier": 0.5, "n_epochs": 7}, 10).as_dict()["n_epochs"] == 7
