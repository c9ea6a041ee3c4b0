"""SQL of what the daemon produces: votes with their rollouts, model versions, workers.

The queue's own transitions stay in ``ttrl.db.queue``; functions here take a Connection in
the caller's transaction, so a vote, its rollouts and the problem's advance commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ttrl.daemon.passes import PassVote
from ttrl.daemon.records import VoteRecord
from ttrl.db.connection import utcnow
from ttrl.db.models import GuardDecision, Lineage, ModelVersion, Problem, Rollout, Vote, Worker

R = Rollout.__table__.c
V = Vote.__table__.c
MV = ModelVersion.__table__.c
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


def recent_votes(conn: Connection, problem_ids: Sequence[int], k: int) -> dict[int, list[PassVote]]:
    """The newest ``k`` votes of each problem, oldest first: the pass policy's history."""
    if not problem_ids or k < 1:
        return {}
    newest_first = func.row_number().over(partition_by=V.problem_id, order_by=V.pass_index.desc())
    ranked = (
        select(V.problem_id, V.pass_index, V.label_key, V.share, newest_first.label("rank"))
        .where(V.problem_id.in_(list(problem_ids)))
        .subquery()
    )
    rows = conn.execute(
        select(ranked.c.problem_id, ranked.c.label_key, ranked.c.share)
        .where(ranked.c.rank <= k)
        .order_by(ranked.c.problem_id, ranked.c.pass_index)
    )
    history: dict[int, list[PassVote]] = {}
    for problem_id, label_key, share in rows:
        history.setdefault(problem_id, []).append(PassVote(label_key, share))
    return history


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


def add_version(
    conn: Connection,
    version: int,
    parent: int | None,
    path: str | None,
    metrics: dict[str, Any],
    status: str = "active",
) -> None:
    """Record a model version whose checkpoint files are complete. An ``active`` one
    retires its parent; a ``rolled_back`` one (refused by the guard) changes nothing else."""
    known = {c.name for c in ModelVersion.__table__.columns}
    conn.execute(
        insert(ModelVersion).values(
            version=version,
            parent=parent,
            path=path,
            status=status,
            created_at=utcnow(),
            metrics=metrics,
            **{k: v for k, v in metrics.items() if k in known and k not in ("version", "status")},
        )
    )
    if parent is not None and status == "active":
        conn.execute(
            update(ModelVersion)
            .where(MV.version == parent, MV.status == "active")
            .values(status="retired")
        )


def newest_active_version(conn: Connection) -> tuple[int, str | None] | None:
    """``(version, checkpoint path)`` of the newest active version, or None before any update."""
    row = conn.execute(
        select(MV.version, MV.path)
        .where(MV.status == "active")
        .order_by(MV.version.desc())
        .limit(1)
    ).first()
    return (row.version, row.path) if row else None


def register_worker(conn: Connection, worker_id: str, host: str, pid: int, role: str) -> None:
    now = utcnow()
    conn.execute(delete(Worker).where(Worker.id == worker_id))
    conn.execute(
        insert(Worker).values(
            id=worker_id,
            host=host,
            pid=pid,
            role=role,
            state="starting",
            started_at=now,
            heartbeat_at=now,
        )
    )


def heartbeat(
    conn: Connection,
    worker_id: str,
    state: str | None = None,
    version: int | None = None,
    reason: str | None = None,
) -> None:
    """Beat the worker's heart; a new ``state`` replaces the old one and its ``reason``."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if state is not None:
        values["state"] = state
        values["reason"] = reason
    if version is not None:
        values["model_version"] = version
    conn.execute(update(Worker).where(Worker.id == worker_id).values(**values))


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


def newest_version_number(conn: Connection) -> int:
    """The highest version number ever recorded (rolled back ones included), 0 if none."""
    return conn.execute(select(func.coalesce(func.max(MV.version), 0))).scalar_one()


def best_version(conn: Connection, below: int, since: int = 0) -> tuple[int, str | None] | None:
    """The version to roll back to from ``below``: among the versions before it (and from
    ``since`` on: the current lineage's) that the guard probed and passed (no tripped
    hold/rollback signal) and that were never rolled back, the best canary pass@1 (the
    newest on ties and without canaries); None means the base model."""
    g = GuardDecision.__table__.c
    probed = select(g.version).group_by(g.version)
    failed = select(g.version).where(g.tripped, g.action.in_(("hold", "rollback")))
    row = conn.execute(
        select(MV.version, MV.path)
        .where(
            MV.version < below,
            MV.version >= since,
            MV.status != "rolled_back",
            MV.version.in_(probed.scalar_subquery()),
            MV.version.not_in(failed.scalar_subquery()),
        )
        .order_by(func.coalesce(MV.canary_pass1, -1.0).desc(), MV.version.desc())
        .limit(1)
    ).first()
    return (row.version, row.path) if row else None


def roll_back(conn: Connection, bad: int, to: int | None) -> None:
    """Mark ``bad`` rolled back and make ``to`` (None: the base) the active version again.
    The untrained rollouts ``bad`` sampled are consumed: no update learns from them."""
    conn.execute(update(ModelVersion).where(MV.version == bad).values(status="rolled_back"))
    others = update(ModelVersion).where(MV.status == "active")
    if to is not None:
        others = others.where(MV.version != to)
        conn.execute(update(ModelVersion).where(MV.version == to).values(status="active"))
    conn.execute(others.values(status="retired"))
    mark_version_consumed(conn, bad)


def mark_version_consumed(conn: Connection, version: int) -> None:
    """No update will train on the rollouts ``version`` sampled (they are marked as used by it)."""
    conn.execute(
        update(Rollout)
        .where(R.model_version == version, R.trained_in_version.is_(None))
        .values(trained_in_version=version)
    )


def record_decisions(conn: Connection, version: int, worker: str, decisions: Sequence[Any]) -> None:
    """One ``guard_decisions`` row per signal (``ttrl.daemon.guard.Decision``)."""
    now = utcnow()
    conn.execute(
        insert(GuardDecision),
        [
            {
                "version": version,
                "signal": d.signal,
                "value": d.value,
                "threshold": d.threshold,
                "tripped": d.tripped,
                "action": d.action,
                "worker": worker,
                "created_at": now,
            }
            for d in decisions
        ],
    )


def probe_prompts(
    conn: Connection, canary_batches: Sequence[str], max_canaries: int, recent: int
) -> list[tuple[str, str | None]]:
    """The guard's probe: (prompt, reference) of up to ``max_canaries`` canaries with a
    reference answer, then (prompt, None) of the ``recent`` newest other problems."""
    out: list[tuple[str, str | None]] = []
    if canary_batches and max_canaries:
        out += [
            (row.prompt, row.reference_answer)
            for row in conn.execute(
                select(P.prompt, P.reference_answer)
                .where(P.batch.in_(list(canary_batches)), P.reference_answer.is_not(None))
                .order_by(P.id)
                .limit(max_canaries)
            )
        ]
    others = select(P.prompt).where(P.status != "failed").order_by(P.id.desc()).limit(recent)
    if canary_batches:
        others = others.where(P.batch.not_in(list(canary_batches)))
    out += [(prompt, None) for prompt in conn.execute(others).scalars()]
    return out


@dataclass(frozen=True)
class LineageRecord:
    model: str
    path: str
    fingerprint: str
    first_version: int
    created_at: datetime


def current_lineage(conn: Connection) -> LineageRecord | None:
    """The base model the database's model versions descend from (None: never recorded)."""
    L = Lineage.__table__.c
    row = conn.execute(
        select(L.model, L.path, L.fingerprint, L.first_version, L.created_at)
        .order_by(L.id.desc())
        .limit(1)
    ).first()
    return LineageRecord(*row) if row else None


def start_lineage(
    conn: Connection, model: str, path: str, fingerprint: str, retire: bool = False
) -> int:
    """Record ``model`` as the base of the versions from now on; returns the first version
    number of the lineage. With ``retire`` the previous lineage ends: its active versions
    are retired (nothing resumes them) and its untrained rollouts consumed (another model
    sampled them: no update of this one trains on them)."""
    first = newest_version_number(conn) + 1
    if retire:
        conn.execute(update(ModelVersion).where(MV.status == "active").values(status="retired"))
        conn.execute(
            update(Rollout)
            .where(R.trained_in_version.is_(None))
            .values(trained_in_version=R.model_version)
        )
    conn.execute(
        insert(Lineage).values(
            model=model,
            path=path,
            fingerprint=fingerprint,
            first_version=first if retire else 1,
            created_at=utcnow(),
        )
    )
    return first if retire else 1
