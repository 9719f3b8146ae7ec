"""Pieces of the reinforcement recipe: group advantages and how hyperparameters scale sampling."""

from __future__ import annotations

import pytest

from openft.training.recipes.reinforcement import advantages, group_size, max_new_tokens


def test_advantages_are_group_normalised() -> None:
    adv = advantages([1.0, 0.0, 0.0, 1.0])
    assert adv == pytest.approx([1.0, -1.0, -1.0, 1.0])
    assert sum(adv) == pytest.approx(0.0)


def test_equal_rewards_teach_nothing() -> None:
    assert advantages([0.3, 0.3, 0.3]) == [0.0, 0.0, 0.0]


def test_compute_multiplier_scales_the_group_and_reasoning_effort_the_length() -> None:
    assert group_size(1.0) == 4
    assert group_size(2.0) == 8
    assert group_size(0.01) == 2  # a group needs two samples for a baseline
    assert group_size(100) == 64
    assert max_new_tokens("low") < max_new_tokens("default") == max_new_tokens("medium") < max_new_tokens("high")
