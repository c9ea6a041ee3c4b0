"""Choosing what to train on: M of N per group, dropping groups without reward spread or
whose pseudo-label won too few votes."""

import random

import pytest
from rl_helpers import make_groups

from ttrl.rl.batch import Rollout, RolloutGroup, select_groups


def test_downsamples_to_m_and_drops_uniform_groups() -> None:
    groups = make_groups(5, 8, uniform=frozenset({1, 3}))
    sel = select_groups(groups, 4, drop_uniform=True, rng=random.Random(0))
    assert sel.dropped_uniform == 2
    assert [g.problem_id for g in sel.groups] == [0, 2, 4]
    for g in sel.groups:
        assert len(g.rollouts) == 4
        assert len({r.reward for r in g.rollouts}) == 2
        original = next(o for o in groups if o.problem_id == g.problem_id).rollouts
        assert all(r in original for r in g.rollouts)


def test_a_down_sample_that_loses_the_spread_is_dropped() -> None:
    rollouts = [Rollout([3], [4], 1.0, 0)] * 7 + [Rollout([3], [5], 0.0, 0)]
    dropped = 0
    for seed in range(20):
        sel = select_groups([RolloutGroup(0, rollouts)], 2, True, random.Random(seed))
        dropped += sel.dropped_uniform
        assert all(len({r.reward for r in g.rollouts}) == 2 for g in sel.groups)
    assert 0 < dropped < 20


def test_selection_is_deterministic_per_seed_and_keeps_all_without_m() -> None:
    groups = make_groups(3, 6)
    a = select_groups(groups, 3, True, random.Random(5))
    b = select_groups(groups, 3, True, random.Random(5))
    assert a == b
    full = select_groups(groups, None, False, random.Random(0))
    assert full.groups == groups


def test_groups_whose_label_won_too_few_votes_are_dropped_first() -> None:
    spread = [Rollout([3], [4], 1.0, 0)] * 2 + [Rollout([3], [5], 0.0, 0)] * 6
    groups = [
        RolloutGroup("weak", spread, label_share=0.25),
        RolloutGroup("strong", spread, label_share=0.75),
        RolloutGroup("at-threshold", spread, label_share=0.5),
        RolloutGroup("unknown", spread),  # rewards not from a vote: never dropped for share
        RolloutGroup("weak-uniform", spread[:2], label_share=0.2),
    ]
    sel = select_groups(groups, None, True, random.Random(0), min_label_share=0.5)
    assert [g.problem_id for g in sel.groups] == ["strong", "at-threshold", "unknown"]
    # Counted once, as low share, even when the group is also uniform.
    assert (sel.dropped_low_share, sel.dropped_uniform) == (2, 0)
    # The default keeps every group, whatever its share.
    assert select_groups(groups, None, True, random.Random(0)).dropped_low_share == 0


@pytest.mark.parametrize(
    ("rollout", "match"),
    [
        (Rollout([], [4], 1.0, 0), "prompt_token_ids is empty"),
        (Rollout([3], [], 1.0, 0), "completion_token_ids is empty"),
        (Rollout([3], [4], float("nan"), 0), "reward nan is not finite"),
    ],
)
def test_bad_rollouts_are_named(rollout: Rollout, match: str) -> None:
    with pytest.raises(ValueError, match=f"problem 'p7', rollout 0: {match}"):
        select_groups([RolloutGroup("p7", [rollout])], None, True, random.Random(0))
    with pytest.raises(ValueError, match="no rollouts"):
        select_groups([RolloutGroup("p8", [])], None, True, random.Random(0))
