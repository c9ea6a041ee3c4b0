"""From N sampled completions of one problem to the vote the daemon stores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ttrl.answers import Vote, equivalent, extract, pooled_vote
from ttrl.daemon.grading import grade
from ttrl.daemon.records import RolloutRecord, VoteRecord
from ttrl.engines.base import Completion


@dataclass(frozen=True)
class Tally:
    """The completions' texts, their final answers and the vote over them."""

    texts: list[str]
    answers: list[str | None]
    vote: Vote


def tally(samples: Sequence[Completion], earlier: Sequence[str | None] = ()) -> Tally:
    """Extract each completion's final answer and majority-vote them (TTRL's pseudo-label),
    pooled with the ``earlier`` answers of the problem's previous passes when given
    (``daemon.vote_window``).

    The costly part of voting (odd answers go to the sympy workers); thread-safe, so the
    daemon runs it for one batch while the next one samples.
    """
    # A byte-level tokenizer can decode a NUL, which PostgreSQL text cannot hold.
    texts = [s.text.replace("\x00", "\ufffd") for s in samples]
    answers = [extract(t) for t in texts]
    return Tally(texts, answers, pooled_vote(answers, earlier))


def vote_record(
    problem_id: int,
    pass_index: int,
    samples: Sequence[Completion],
    reference: str | None,
    counted: Tally | None = None,
) -> VoteRecord:
    """The vote to store: the :func:`tally` of ``samples`` (``counted`` when already done),
    rewards for agreement with the label, and grading against ``reference`` for dashboards
    only. The vote is attributed to the oldest model version among the samples.
    """
    counted = counted or tally(samples)
    texts, answers, v = counted.texts, counted.answers, counted.vote
    return VoteRecord(
        problem_id=problem_id,
        pass_index=pass_index,
        model_version=min(s.model_version for s in samples),
        label=v.label,
        label_key=str(v.label_key) if v.label_key is not None else None,
        share=v.share,
        n_distinct=v.n_distinct,
        tie=v.tie,
        grading=grade(v, answers, reference, equivalent),
        rollouts=[
            RolloutRecord(
                text=t,
                prompt_token_ids=list(s.prompt_token_ids),
                token_ids=list(s.token_ids),
                finish_reason=s.finish_reason,
                raw_answer=a,
                answer_key=str(k) if k is not None else None,
                reward=r,
                logprobs=None if s.logprobs is None else list(s.logprobs),
            )
            for s, t, a, k, r in zip(samples, texts, answers, v.keys, v.rewards, strict=True)
        ],
    )
