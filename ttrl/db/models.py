"""The SQL schema (SQLAlchemy 2.0 declarative). Migrations in ``migrations/`` create it.

All timestamps are naive UTC (``ttrl.db.clock.utcnow``), the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import text as sql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

PROBLEM_STATUSES = ("queued", "claimed", "done", "failed")
VERSION_STATUSES = ("active", "retired", "rolled_back")


class Base(DeclarativeBase):
    pass


class Problem(Base):
    """One unlabeled problem and its place in the queue (see ``ttrl.db.queue``)."""

    __tablename__ = "problems"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    batch: Mapped[str] = mapped_column(String(255), server_default="default")
    prompt: Mapped[str] = mapped_column(Text)
    # ONLY for dashboards: never read by the reward path.
    reference_answer: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    passes_wanted: Mapped[int] = mapped_column(Integer, server_default="1")
    passes_done: Mapped[int] = mapped_column(Integer, server_default="0")
    # The pass policy ended its passes early, the answer stable (``ttrl.daemon.passes``).
    settled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Exactly passes_wanted passes, whatever the pass policy.
    fixed_passes: Mapped[bool] = mapped_column(Boolean, server_default=false())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    answer_share: Mapped[float | None] = mapped_column(Float)
    answer_version: Mapped[int | None] = mapped_column(Integer)
    # Server defaults (UTC now) come from the migration, so plain SQL INSERTs need only a prompt.
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'claimed', 'done', 'failed')", name="ck_problems_status"
        ),
        CheckConstraint("passes_wanted >= 1", name="ck_problems_passes_wanted"),
        # The claim query walks this partial index in order: priority first, then FIFO by
        # the time the problem (re-)entered the queue, so a next pass waits its turn.
        Index(
            "ix_problems_claim",
            sql("priority DESC"),
            "updated_at",
            "id",
            postgresql_where=sql("status = 'queued'"),
            sqlite_where=sql("status = 'queued'"),
        ),
        Index(
            "ix_problems_lease",
            "lease_until",
            postgresql_where=sql("status = 'claimed'"),
            sqlite_where=sql("status = 'claimed'"),
        ),
        Index("ix_problems_batch_status", "batch", "status"),
        # Per-batch dashboard views read (id, batch) from this index alone (index-only scan).
        Index("ix_problems_batch_id", "batch", "id"),
    )


class ModelVersion(Base):
    """A trained model version: its checkpoint and the metrics of the update that made it."""

    __tablename__ = "model_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parent: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    loss: Mapped[float | None] = mapped_column(Float)
    kl: Mapped[float | None] = mapped_column(Float)
    entropy: Mapped[float | None] = mapped_column(Float)
    clip_frac: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    mean_reward: Mapped[float | None] = mapped_column(Float)
    n_groups: Mapped[int | None] = mapped_column(Integer)
    n_tokens: Mapped[int | None] = mapped_column(BigInteger)
    train_s: Mapped[float | None] = mapped_column(Float)
    swap_s: Mapped[float | None] = mapped_column(Float)
    # Share of the guard's canary samples with the reference answer (None: no canaries).
    canary_pass1: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'retired', 'rolled_back')", name="ck_model_versions_status"
        ),
    )


class Vote(Base):
    """The majority vote of one pass over one problem by one model version."""

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    pass_index: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(Text)
    label_key: Mapped[str | None] = mapped_column(Text)
    share: Mapped[float] = mapped_column(Float)
    n_distinct: Mapped[int] = mapped_column(Integer)
    tie: Mapped[bool] = mapped_column(Boolean, default=False)
    # Filled only where the problem has a reference answer (dashboards, never reward).
    label_correct: Mapped[bool | None] = mapped_column(Boolean)
    reward_accuracy: Mapped[float | None] = mapped_column(Float)
    pass_at_1: Mapped[float | None] = mapped_column(Float)
    # Summed n_tokens of the vote's rollouts: token means per version without the rollouts.
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        # A (problem, pass) is voted once, whatever crashes and retries happen.
        UniqueConstraint("problem_id", "pass_index", name="uq_votes_problem_pass"),
        Index("ix_votes_model_version", "model_version"),
    )


class Rollout(Base):
    """One sampled completion, its extracted answer and its reward."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    vote_id: Mapped[int] = mapped_column(ForeignKey("votes.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)  # pruned by retention once trained on
    prompt_token_ids: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))
    token_ids: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))
    # The engine's logprob of each token (importance-sampling correction); pruned with text.
    logprobs: Mapped[list[float] | None] = mapped_column(JSON(none_as_null=True))
    n_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str] = mapped_column(String(16))
    raw_answer: Mapped[str | None] = mapped_column(Text)
    answer_key: Mapped[str | None] = mapped_column(Text)
    reward: Mapped[float] = mapped_column(Float)
    trained_in_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_rollouts_vote", "vote_id"),
        Index("ix_rollouts_problem", "problem_id"),
        Index(
            "ix_rollouts_untrained",
            "model_version",
            postgresql_where=sql("trained_in_version IS NULL"),
            sqlite_where=sql("trained_in_version IS NULL"),
        ),
    )


class GuardDecision(Base):
    """One signal of the collapse guard checked for one model version (``ttrl.daemon.guard``)."""

    __tablename__ = "guard_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[int] = mapped_column(Integer)
    signal: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    tripped: Mapped[bool] = mapped_column(Boolean)
    action: Mapped[str] = mapped_column(String(16))  # none, alert, hold, rollback
    worker: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (Index("ix_guard_decisions_version", "version"),)


class Worker(Base):
    """A running ttrl process, kept alive by its heartbeat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[int | None] = mapped_column(Integer)  # the version it serves
    started_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
    # Why it stopped, when it did not stop on a signal (e.g. the engine circuit breaker).
    reason: Mapped[str | None] = mapped_column(Text)


class Lineage(Base):
    """The base model a line of model versions descends from; the newest row is the
    current lineage. Versions numbered below its ``first_version`` belong to older ones."""

    __tablename__ = "lineages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(Text)  # engine.model as configured
    path: Mapped[str] = mapped_column(Text)  # the directory it resolved to
    fingerprint: Mapped[str] = mapped_column(String(64))  # ttrl.lm.files.fingerprint
    first_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # The collapse guard's probe ([prompt, reference] pairs) and its baseline stats
    # (ttrl.daemon.guard.ProbeStats), measured once with the version named (0: the base).
    guard_probe: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    guard_baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    guard_baseline_version: Mapped[int | None] = mapped_column(Integer)
