"""Samples of one problem against its reference answer: pass@1, maj@k, reward accuracy.

The figures of the TTRL paper (Zuo et al. 2025, sec. 4), for ``ttrl eval``, the collapse
guard's canaries and the daemon's dashboards; none of them ever feeds a reward:

- pass@1: the share of the samples whose answer is equivalent to the reference;
- maj@k: whether the majority label (the pseudo-label TTRL trains on) is;
- reward accuracy: the share of samples whose majority-vote reward (1 in the winning
  cluster, else 0) is the reward the reference would give.

One ``equivalent`` call per vote cluster, not per sample: the members of a cluster are
equivalent to each other, so the cluster's first answer speaks for all of them.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ttrl.answers.vote import Vote, equivalent


@dataclass(frozen=True)
class Score:
    """Per sample: whether its answer is the reference's, and whether the vote rewarded it."""

    correct: tuple[bool, ...]  # equivalent to the reference (no answer: False)
    rewarded: tuple[bool, ...]  # in the winning cluster (majority reward 1)

    @property
    def majority_correct(self) -> bool:
        """maj@k of this problem: the winning cluster holds the reference answer."""
        return any(c and r for c, r in zip(self.correct, self.rewarded, strict=True))

    @property
    def pass_at_1(self) -> float:
        """The share of samples equivalent to the reference (0.0 without samples)."""
        return sum(self.correct) / len(self.correct) if self.correct else 0.0

    @property
    def reward_accuracy(self) -> float:
        """The share of samples whose majority reward equals their true reward."""
        if not self.correct:
            return 0.0
        agree = sum(c == r for c, r in zip(self.correct, self.rewarded, strict=True))
        return agree / len(self.correct)


def score(
    vote: Vote,
    answers: Sequence[str | None],
    reference: str,
    equivalent: Callable[[str | None, str | None], bool] = equivalent,
) -> Score:
    """Grade the ``answers`` a ``vote`` was taken over against ``reference``.

    >>> from ttrl.answers import vote
    >>> s = score(vote(["1/2", "0.5", "2"]), ["1/2", "0.5", "2"], "0.50")
    >>> s.correct, s.pass_at_1, s.majority_correct
    ((True, True, False), 0.6666666666666666, True)
    """
    first_of: dict[int, str] = {}
    for answer, cluster in zip(answers, vote.membership, strict=True):
        if cluster is not None and answer is not None:
            first_of.setdefault(cluster, answer)
    verdict = {cluster: equivalent(a, reference) for cluster, a in first_of.items()}
    return Score(
        correct=tuple(c is not None and verdict.get(c, False) for c in vote.membership),
        rewarded=tuple(c == 0 for c in vote.membership),
    )
