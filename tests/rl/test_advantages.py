"""Advantage estimators against hand-computed float64 values."""

import math

import pytest
import torch

from ttrl.rl.advantages import compute_advantages

# Interleaved groups: 0 -> [1, 0, 0, 1] (spread), 1 -> [1, 1, 1] (identical), 2 -> [0.5] (alone).
REWARDS = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5, 1.0], dtype=torch.float64)
GROUPS = torch.tensor([0, 1, 0, 1, 0, 1, 2, 0])
EPS = 1e-6


def test_grpo_hand_values() -> None:
    std0 = math.sqrt(4 * 0.25 / 3)  # unbiased std of [1, 0, 0, 1]
    a = 0.5 / (std0 + EPS)
    expected = torch.tensor([a, 0.0, -a, 0.0, -a, 0.0, 0.0, a], dtype=torch.float64)
    got = compute_advantages("grpo", REWARDS, GROUPS, EPS)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_dr_grpo_has_no_std() -> None:
    expected = torch.tensor([0.5, 0, -0.5, 0, -0.5, 0, 0, 0.5], dtype=torch.float64)
    got = compute_advantages("dr_grpo", REWARDS, GROUPS)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)


def test_reinforce_leaves_rewards_unnormalised() -> None:
    got = compute_advantages("reinforce", REWARDS, GROUPS)
    torch.testing.assert_close(got, REWARDS, rtol=0, atol=0)
    assert got.data_ptr() != REWARDS.data_ptr()


def test_identical_rewards_give_exactly_zero_advantage() -> None:
    rewards = torch.full((5,), 0.3, dtype=torch.float64)
    for name in ("grpo", "dr_grpo"):
        adv = compute_advantages(name, rewards, torch.zeros(5, dtype=torch.long))
        assert torch.all(adv.abs() < 1e-15), (name, adv)


@pytest.mark.parametrize(
    ("rewards", "groups", "match"),
    [
        (torch.zeros(3), torch.zeros(2, dtype=torch.long), "same length"),
        (torch.zeros(0), torch.zeros(0, dtype=torch.long), "empty"),
    ],
)
def test_bad_input_is_named(rewards, groups, match) -> None:
    with pytest.raises(ValueError, match=match):
        compute_advantages("grpo", rewards, groups)


def test_unknown_estimator_lists_choices() -> None:
    with pytest.raises(ValueError, match="dr_grpo"):
        compute_advantages("ppo", REWARDS, GROUPS)
