"""Advantage estimators: one scalar per rollout from the rewards of its group.

Each estimator takes the flat rewards of a batch and the group (problem) index of each
rollout, and is registered under the name that ``rl.advantage`` selects.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

AdvantageFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _group_mean_std(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-rollout mean and unbiased std of its group; the std of a one-rollout group is 0."""
    n_groups = int(group_ids.max()) + 1
    counts = torch.bincount(group_ids, minlength=n_groups).to(rewards.dtype)
    sums = torch.zeros(n_groups, dtype=rewards.dtype).index_add_(0, group_ids, rewards)
    mean = (sums / counts)[group_ids]
    sq = torch.zeros(n_groups, dtype=rewards.dtype).index_add_(0, group_ids, (rewards - mean) ** 2)
    # Bessel-corrected like torch.std (and verl/TRL); a single rollout has no spread.
    var = torch.where(counts > 1, sq / (counts - 1).clamp(min=1), torch.zeros_like(sq))
    return mean, var.sqrt()[group_ids]


def _check(rewards: torch.Tensor, group_ids: torch.Tensor) -> None:
    if rewards.ndim != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be "
            "1-D and of the same length"
        )
    if rewards.numel() == 0:
        raise ValueError("rewards is empty: pass at least one rollout")


def grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath eq. 3): ``A_i = (r_i - mean(r)) / (std(r) + eps)``.

    Mean and std are taken over the rollouts of the same group (problem).
    """
    _check(rewards, group_ids)
    mean, std = _group_mean_std(rewards, group_ids)
    return (rewards - mean) / (std + eps)


def dr_grpo_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, eps: float) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): ``A_i = r_i - mean(r)``.

    Dropping the std removes GRPO's question-difficulty bias; ``eps`` is unused.
    """
    _check(rewards, group_ids)
    mean, _ = _group_mean_std(rewards, group_ids)
    return rewards - mean


def reinforce_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, eps: float
) -> torch.Tensor:
    """Plain REINFORCE (Williams 1992): ``A_i = r_i``, groups left unnormalised."""
    _check(rewards, group_ids)
    return rewards.clone()


ADVANTAGES: dict[str, AdvantageFn] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "reinforce": reinforce_advantages,
}


def compute_advantages(
    name: str, rewards: torch.Tensor, group_ids: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Run the estimator registered as ``name`` (see :data:`ADVANTAGES`)."""
    try:
        fn = ADVANTAGES[name]
    except KeyError:
        raise ValueError(
            f"unknown advantage {name!r}; choose one of {sorted(ADVANTAGES)}"
        ) from None
    return fn(rewards, group_ids, eps)
