"""What one pass produces, as plain records: a vote, its rollouts and (for dashboards
only) its grading against a reference answer. Pure: the voting and grading code builds
them, ``ttrl.daemon.votes`` writes them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grading:
    """Dashboard-only figures against a reference answer (never used for reward)."""

    label_correct: bool
    reward_accuracy: float
    pass_at_1: float


@dataclass(frozen=True)
class RolloutRecord:
    text: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    finish_reason: str
    raw_answer: str | None
    answer_key: str | None
    reward: float
    logprobs: list[float] | None = None


@dataclass(frozen=True)
class VoteRecord:
    problem_id: int
    pass_index: int
    model_version: int
    label: str | None
    label_key: str | None
    share: float
    n_distinct: int
    tie: bool
    grading: Grading | None
    rollouts: list[RolloutRecord]
