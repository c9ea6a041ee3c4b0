"""The dashboard views as typed SQLAlchemy tables, for ttrl's own readers.

The SQL lives in migrations 0002 and 0006 (frozen there: a view changes by a new revision); these
declarations name the columns and give them types, so SQLite's text timestamps come back
as datetimes, as they do from PostgreSQL. ``tests/dashboards`` checks both stay in step.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# Not Base.metadata: views are not tables, and Alembic autogenerate must not see them.
metadata = MetaData()


def _accuracy_columns() -> list[Column]:
    """Columns of the TTRL accuracy aggregates, shared by the per-version views."""
    return [
        Column("votes", BigInteger),
        Column("rollouts", BigInteger),
        Column("with_reference", BigInteger),
        Column("label_accuracy", Float),
        Column("reward_accuracy", Float),
        Column("pass_at_1", Float),
        Column("majority_ratio", Float),
        Column("mean_distinct", Float),
        Column("tie_rate", Float),
        Column("no_answer_rate", Float),
        Column("mean_completion_tokens", Float),
        Column("first_vote_at", DateTime),
        Column("last_vote_at", DateTime),
    ]


accuracy_by_version = Table(
    "v_accuracy_by_version", metadata, Column("model_version", Integer), *_accuracy_columns()
)

accuracy_by_version_batch = Table(
    "v_accuracy_by_version_batch",
    metadata,
    Column("model_version", Integer),
    Column("batch", String),
    *_accuracy_columns(),
)

queue = Table(
    "v_queue",
    metadata,
    Column("batch", String),
    Column("status", String),
    Column("problems", BigInteger),
    Column("passes_left", BigInteger),
    Column("oldest_created_at", DateTime),
    Column("oldest_age_s", Float),
    Column("longest_in_status_s", Float),
    Column("expired_leases", BigInteger),
    Column("settled", BigInteger),
)

throughput_hourly = Table(
    "v_throughput_hourly",
    metadata,
    Column("hour", DateTime),
    Column("votes", BigInteger),
    Column("rollouts", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("updates", BigInteger),
    Column("trained_tokens", BigInteger),
    Column("train_s", Float),
    Column("swap_s", Float),
)

versions = Table(
    "v_versions",
    metadata,
    Column("version", Integer),
    Column("parent", Integer),
    Column("status", String),
    Column("created_at", DateTime),
    Column("path", Text),
    Column("loss", Float),
    Column("kl", Float),
    Column("entropy", Float),
    Column("clip_frac", Float),
    Column("grad_norm", Float),
    Column("mean_reward", Float),
    Column("n_groups", Integer),
    Column("trained_tokens", BigInteger),
    Column("train_s", Float),
    Column("swap_s", Float),
    Column("train_tokens_per_s", Float),
    Column("since_parent_s", Float),
)

workers = Table(
    "v_workers",
    metadata,
    Column("id", String),
    Column("host", String),
    Column("pid", Integer),
    Column("role", String),
    Column("state", String),
    Column("started_at", DateTime),
    Column("heartbeat_at", DateTime),
    Column("heartbeat_age_s", Float),
)

answers = Table(
    "v_answers",
    metadata,
    Column("problem_id", BigInteger),
    Column("external_id", String),
    Column("batch", String),
    Column("status", String),
    Column("passes_done", Integer),
    Column("passes_wanted", Integer),
    Column("settled", Boolean),
    Column("answer", Text),
    Column("answer_share", Float),
    Column("answer_version", Integer),
    Column("reference_answer", Text),
    Column("answer_correct", Boolean),
    Column("n_distinct", Integer),
    Column("tie", Boolean),
    Column("updated_at", DateTime),
)

answer_history = Table(
    "v_answer_history",
    metadata,
    Column("problem_id", BigInteger),
    Column("pass_index", Integer),
    Column("model_version", Integer),
    Column("label", Text),
    Column("share", Float),
    Column("n_distinct", Integer),
    Column("tie", Boolean),
    Column("correct", Boolean),
    Column("previous_label", Text),
    Column("label_changed", Integer),
    Column("created_at", DateTime),
)

ALL = tuple(metadata.tables.values())
