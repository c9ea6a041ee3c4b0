"""The votes and rollouts tables: one owner for what a pass writes and an update consumes.

A rollout is written untrained (``trained_in_version`` NULL); an update, a rollback or a
new lineage consumes it; retention drops the texts of consumed ones. Functions take a
Connection in the caller's transaction, so a vote, its rollouts and the problem's advance
(``ttrl.db.queue.complete_pass``) commit together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ttrl.daemon.passes import PassVote
from ttrl.daemon.records import VoteRecord
from ttrl.db.connection import utcnow
from ttrl.db.models import ModelVersion, Problem, Rollout, Vote

R = Rollout.__table__.c
V = Vote.__table__.c
P = Problem.__table__.c


@dataclass(frozen=True)
class StoredRollout:
    vote_id: int
    problem_id: int
    model_version: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    reward: float
    label_share: float  # of the vote the rollout belongs to
    logprobs: list[float] | None


def reference_answers(conn: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """Reference answers of problems, for grading only."""
    if not ids:
        return {}
    rows = conn.execute(select(Problem.id, Problem.reference_answer).where(Problem.id.in_(ids)))
    return {pid: ref for pid, ref in rows}


def record_vote(conn: Connection, record: VoteRecord, worker: str) -> int:
    """Insert a vote and its rollouts; returns the vote id. The unique (problem, pass)
    constraint makes a second vote of the same pass fail instead of double-counting."""
    now = utcnow()
    g = record.grading
    vote_id = conn.execute(
        insert(Vote)
        .values(
            problem_id=record.problem_id,
            pass_index=record.pass_index,
            model_version=record.model_version,
            n=len(record.rollouts),
            label=record.label,
            label_key=record.label_key,
            share=record.share,
            n_distinct=record.n_distinct,
            tie=record.tie,
            label_correct=g.label_correct if g else None,
            reward_accuracy=g.reward_accuracy if g else None,
            pass_at_1=g.pass_at_1 if g else None,
            completion_tokens=sum(len(r.token_ids) for r in record.rollouts),
            worker=worker,
            created_at=now,
        )
        .returning(V.id)
    ).scalar_one()
    conn.execute(
        insert(Rollout),
        [
            {
                "problem_id": record.problem_id,
                "vote_id": vote_id,
                "model_version": record.model_version,
                "text": r.text,
                "prompt_token_ids": r.prompt_token_ids,
                "token_ids": r.token_ids,
                "logprobs": r.logprobs,
                "n_tokens": len(r.token_ids),
                "finish_reason": r.finish_reason,
                "raw_answer": r.raw_answer,
                "answer_key": r.answer_key,
                "reward": r.reward,
                "created_at": now,
            }
            for r in record.rollouts
        ],
    )
    return vote_id


def _newest_votes(problem_ids: Sequence[int], k: int) -> Any:
    """The newest ``k`` votes of each of ``problem_ids``: a subquery of their rows."""
    newest_first = func.row_number().over(partition_by=V.problem_id, order_by=V.pass_index.desc())
    ranked = (
        select(V.id, V.problem_id, V.pass_index, V.label_key, V.share, newest_first.label("rank"))
        .where(V.problem_id.in_(list(problem_ids)))
        .subquery()
    )
    return select(ranked).where(ranked.c.rank <= k).subquery()


def recent_votes(conn: Connection, problem_ids: Sequence[int], k: int) -> dict[int, list[PassVote]]:
    """The newest ``k`` votes of each problem, oldest first: the pass policy's history."""
    if not problem_ids or k < 1:
        return {}
    newest = _newest_votes(problem_ids, k)
    rows = conn.execute(
        select(newest.c.problem_id, newest.c.label_key, newest.c.share).order_by(
            newest.c.problem_id, newest.c.pass_index
        )
    )
    history: dict[int, list[PassVote]] = {}
    for problem_id, label_key, share in rows:
        history.setdefault(problem_id, []).append(PassVote(label_key, share))
    return history


def recent_answers(
    conn: Connection, problem_ids: Sequence[int], k: int
) -> dict[int, list[str | None]]:
    """The final answers (None: no answer) of the rollouts of each problem's newest ``k``
    votes: what ``daemon.vote_window`` pools into the next vote. Rollouts of a version the
    guard rolled back are left out: its answers must not vote again."""
    if not problem_ids or k < 1:
        return {}
    newest = _newest_votes(problem_ids, k)
    refused = select(ModelVersion.version).where(ModelVersion.status == "rolled_back")
    rows = conn.execute(
        select(R.problem_id, R.raw_answer)
        .join(newest, newest.c.id == R.vote_id)
        .where(R.model_version.not_in(refused))
        .order_by(R.problem_id, newest.c.pass_index.desc(), R.id)
    )
    answers: dict[int, list[str | None]] = {}
    for problem_id, raw_answer in rows:
        answers.setdefault(problem_id, []).append(raw_answer)
    return answers


def _trainable(min_version: int, canary_batches: Sequence[str]) -> list[Any]:
    """Untrained, fresh enough, and not of a canary problem (canaries are never trained on)."""
    where = [R.trained_in_version.is_(None), R.model_version >= min_version]
    if canary_batches:
        canaries = select(P.id).where(P.batch.in_(list(canary_batches)))
        where.append(R.problem_id.not_in(canaries.scalar_subquery()))
    return where


def count_untrained_groups(
    conn: Connection, min_version: int, canary_batches: Sequence[str] = ()
) -> int:
    """Votes whose rollouts wait for training and are fresh enough to train on."""
    return conn.execute(
        select(func.count(func.distinct(R.vote_id))).where(*_trainable(min_version, canary_batches))
    ).scalar_one()


def untrained_rollouts(
    conn: Connection, min_version: int, max_groups: int, canary_batches: Sequence[str] = ()
) -> dict[int, list[StoredRollout]]:
    """Rollouts of the oldest ``max_groups`` untrained votes, by vote id."""
    votes = (
        select(R.vote_id)
        .where(*_trainable(min_version, canary_batches))
        .group_by(R.vote_id)
        .order_by(R.vote_id)
        .limit(max_groups)
    )
    rows = conn.execute(
        select(
            R.vote_id,
            R.problem_id,
            R.model_version,
            R.prompt_token_ids,
            R.token_ids,
            R.reward,
            V.share,
            R.logprobs,
        )
        .join(Vote, V.id == R.vote_id)
        .where(R.vote_id.in_(votes.scalar_subquery()))
        .order_by(R.vote_id, R.id)
    )
    groups: dict[int, list[StoredRollout]] = {}
    for row in rows:
        groups.setdefault(row.vote_id, []).append(StoredRollout(*row))
    return groups


def mark_trained(conn: Connection, vote_ids: Sequence[int], version: int) -> None:
    """Consume votes: their rollouts were used (or dropped) by the update to ``version``."""
    if vote_ids:
        conn.execute(
            update(Rollout)
            .where(R.vote_id.in_(list(vote_ids)), R.trained_in_version.is_(None))
            .values(trained_in_version=version)
        )


def mark_version_consumed(conn: Connection, version: int) -> None:
    """No update will train on the rollouts ``version`` sampled (they are marked as used by it)."""
    conn.execute(
        update(Rollout)
        .where(R.model_version == version, R.trained_in_version.is_(None))
        .values(trained_in_version=version)
    )


def consume_untrained(conn: Connection) -> None:
    """No update trains on any rollout written so far (a new lineage: another model sampled
    them); each is marked as used by the version that sampled it."""
    conn.execute(
        update(Rollout)
        .where(R.trained_in_version.is_(None))
        .values(trained_in_version=R.model_version)
    )


def prune_rollout_texts(conn: Connection, older_than: datetime, min_trainable: int) -> int:
    """Drop texts, token ids and logprobs of old rollouts that no update will read again:
    trained on, or sampled by a version older than ``min_trainable``. Answers and rewards
    stay."""
    return conn.execute(
        update(Rollout)
        .where(
            R.created_at < older_than,
            R.text.is_not(None),
            or_(R.trained_in_version.is_not(None), R.model_version < min_trainable),
        )
        .values(text=None, prompt_token_ids=None, token_ids=None, logprobs=None)
    ).rowcount
