"""Figures against a reference answer, computed once when a vote is stored (dashboards only).

TTRL (Zuo et al. 2025, §4) tracks label accuracy (is the majority label right?), reward
accuracy (does the majority reward match the reward the reference would give?) and pass@1.
None of these ever feeds a reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ttrl.answers import Vote
from ttrl.daemon.records import Grading


def grade(
    vote: Vote,
    answers: Sequence[str | None],
    reference: str | None,
    equivalent: Callable[[str | None, str | None], bool],
) -> Grading | None:
    """Grade one vote; None when the problem has no reference answer.

    One ``equivalent`` call per cluster (not per rollout): members of a cluster are
    equivalent to each other, so the cluster's first answer speaks for all of them.
    """
    if reference is None or not vote.n:
        return None
    first_of: dict[int, str] = {}
    for answer, cluster in zip(answers, vote.membership, strict=True):
        if cluster is not None and answer is not None:
            first_of.setdefault(cluster, answer)
    correct = {c: equivalent(a, reference) for c, a in first_of.items()}
    true_rewards = [correct.get(c, False) if c is not None else False for c in vote.membership]
    majority_rewards = [r == 1.0 for r in vote.rewards]
    return Grading(
        label_correct=correct.get(0, False),
        reward_accuracy=sum(t == m for t, m in zip(true_rewards, majority_rewards, strict=True))
        / vote.n,
        pass_at_1=sum(true_rewards) / vote.n,
    )
