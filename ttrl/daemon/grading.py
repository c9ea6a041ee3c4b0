"""Figures against a reference answer, computed once when a vote is stored (dashboards only).

TTRL (Zuo et al. 2025, §4) tracks label accuracy (is the majority label right?), reward
accuracy (does the majority reward match the reward the reference would give?) and pass@1;
``ttrl.answers.scoring`` computes them. None of these ever feeds a reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ttrl.answers import Vote, score
from ttrl.daemon.records import Grading


def grade(
    vote: Vote,
    answers: Sequence[str | None],
    reference: str | None,
    equivalent: Callable[[str | None, str | None], bool],
) -> Grading | None:
    """Grade one vote with ``equivalent``; None when the problem has no reference answer."""
    if reference is None or not vote.n:
        return None
    graded = score(vote, answers, reference, equivalent)
    return Grading(
        label_correct=graded.majority_correct,
        reward_accuracy=graded.reward_accuracy,
        pass_at_1=graded.pass_at_1,
    )
