"""The trainer's input: voted rollout groups, and the choice of what to train on.

The daemon builds one :class:`RolloutGroup` per problem from SQL rows; :func:`select_groups`
then drops groups whose pseudo-label won too few votes, keeps M of the N voted rollouts per
problem and drops groups without reward spread.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rollout:
    """One sampled completion with its reward, as token ids.

    ``completion_token_ids`` may run past the first EOS (some engines keep sampling); the
    trainer ignores everything after it. ``logprobs``: the engine's log-probability of each
    completion token under the distribution it was sampled from (None: not recorded); the
    trainer's importance-sampling correction weighs each token by them.
    """

    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    reward: float
    model_version: int
    logprobs: list[float] | None = None


@dataclass(frozen=True)
class RolloutGroup:
    """All rollouts of one problem from one vote; the unit of the GRPO baseline.

    ``label_share`` is the share of the N votes that the pseudo-label won (None: unknown,
    e.g. rewards that do not come from a vote).
    """

    problem_id: int | str
    rollouts: list[Rollout]
    label_share: float | None = None


@dataclass(frozen=True)
class Selection:
    """The groups to train on and why the others were left out."""

    groups: list[RolloutGroup]
    dropped_uniform: int
    dropped_low_share: int = 0


def validate_groups(groups: Sequence[RolloutGroup]) -> None:
    """Raise ``ValueError`` naming the problem whose rollouts the trainer cannot use."""
    for group in groups:
        if not group.rollouts:
            raise ValueError(f"problem {group.problem_id!r}: the group has no rollouts")
        for i, r in enumerate(group.rollouts):
            where = f"problem {group.problem_id!r}, rollout {i}"
            if not r.prompt_token_ids:
                raise ValueError(f"{where}: prompt_token_ids is empty; tokenize the prompt first")
            if not r.completion_token_ids:
                raise ValueError(f"{where}: completion_token_ids is empty; drop such rollouts")
            if r.reward != r.reward or r.reward in (float("inf"), float("-inf")):
                raise ValueError(f"{where}: reward {r.reward!r} is not finite")
            if r.logprobs is not None and len(r.logprobs) != len(r.completion_token_ids):
                raise ValueError(
                    f"{where}: {len(r.logprobs)} logprobs for {len(r.completion_token_ids)} "
                    "completion tokens; pass one per token, or None"
                )


def downsample(group: RolloutGroup, m: int | None, rng: random.Random) -> RolloutGroup:
    """Keep ``m`` rollouts of the group chosen uniformly without replacement (TTRL, Zuo et al.
    2025, §3: vote on N, train on M < N); all of them when ``m`` is None or >= N."""
    if m is None or m >= len(group.rollouts):
        return group
    return RolloutGroup(group.problem_id, rng.sample(group.rollouts, m), group.label_share)


def is_uniform(group: RolloutGroup) -> bool:
    """True when every rollout has the same reward, so a group baseline leaves no signal."""
    first = group.rollouts[0].reward
    return all(r.reward == first for r in group.rollouts)


def is_low_share(group: RolloutGroup, min_share: float) -> bool:
    """True when the group's pseudo-label won less than ``min_share`` of the votes: a
    plurality of a few scattered votes is often wrong, and training on it teaches the error."""
    return group.label_share is not None and group.label_share < min_share


def select_groups(
    groups: Sequence[RolloutGroup],
    m: int | None,
    drop_uniform: bool,
    rng: random.Random,
    min_label_share: float = 0.0,
) -> Selection:
    """Drop groups whose label won less than ``min_label_share`` of the votes, down-sample
    the others to ``m`` rollouts, then drop groups with identical rewards (DAPO dynamic
    sampling, Yu et al. 2025), counting both."""
    validate_groups(groups)
    kept: list[RolloutGroup] = []
    uniform = low_share = 0
    for group in groups:
        if is_low_share(group, min_label_share):
            low_share += 1
            continue
        small = downsample(group, m, rng)
        if drop_uniform and is_uniform(small):
            uniform += 1
        else:
            kept.append(small)
    return Selection(kept, uniform, low_share)
