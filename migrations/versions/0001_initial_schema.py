"""Initial schema: problems (the queue), votes, rollouts, model_versions, workers.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _utc_now() -> sa.TextClause:
    if op.get_bind().dialect.name == "postgresql":
        return sa.text("(now() AT TIME ZONE 'utc')")
    return sa.text("CURRENT_TIMESTAMP")  # SQLite's is UTC


def upgrade() -> None:
    now = _utc_now()
    op.create_table(
        "model_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="active"),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("kl", sa.Float(), nullable=True),
        sa.Column("entropy", sa.Float(), nullable=True),
        sa.Column("clip_frac", sa.Float(), nullable=True),
        sa.Column("grad_norm", sa.Float(), nullable=True),
        sa.Column("mean_reward", sa.Float(), nullable=True),
        sa.Column("n_groups", sa.Integer(), nullable=True),
        sa.Column("n_tokens", sa.BigInteger(), nullable=True),
        sa.Column("train_s", sa.Float(), nullable=True),
        sa.Column("swap_s", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'retired', 'rolled_back')", name="ck_model_versions_status"
        ),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "problems",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("batch", sa.String(length=255), nullable=False, server_default="default"),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("reference_answer", sa.Text(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="queued"),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("passes_wanted", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("passes_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answer_share", sa.Float(), nullable=True),
        sa.Column("answer_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=now),
        sa.Column("updated_at", sa.DateTime(), nullable=False, server_default=now),
        sa.CheckConstraint(
            "status IN ('queued', 'claimed', 'done', 'failed')", name="ck_problems_status"
        ),
        sa.CheckConstraint("passes_wanted >= 1", name="ck_problems_passes_wanted"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_index("ix_problems_batch_status", "problems", ["batch", "status"], unique=False)
    op.create_index(
        "ix_problems_claim",
        "problems",
        [sa.literal_column("priority DESC"), "updated_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_problems_lease",
        "problems",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status = 'claimed'"),
        sqlite_where=sa.text("status = 'claimed'"),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "votes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "problem_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("pass_index", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("label_key", sa.Text(), nullable=True),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("n_distinct", sa.Integer(), nullable=False),
        sa.Column("tie", sa.Boolean(), nullable=False),
        sa.Column("label_correct", sa.Boolean(), nullable=True),
        sa.Column("reward_accuracy", sa.Float(), nullable=True),
        sa.Column("pass_at_1", sa.Float(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["problem_id"], ["problems.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("problem_id", "pass_index", name="uq_votes_problem_pass"),
    )
    op.create_index("ix_votes_model_version", "votes", ["model_version"], unique=False)
    op.create_table(
        "rollouts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "problem_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("vote_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("prompt_token_ids", sa.JSON(), nullable=True),
        sa.Column("token_ids", sa.JSON(), nullable=True),
        sa.Column("n_tokens", sa.Integer(), nullable=False),
        sa.Column("finish_reason", sa.String(length=16), nullable=False),
        sa.Column("raw_answer", sa.Text(), nullable=True),
        sa.Column("answer_key", sa.Text(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("trained_in_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["problem_id"], ["problems.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["vote_id"], ["votes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_rollouts_untrained",
        "rollouts",
        ["model_version"],
        unique=False,
        postgresql_where=sa.text("trained_in_version IS NULL"),
        sqlite_where=sa.text("trained_in_version IS NULL"),
    )
    op.create_index("ix_rollouts_vote", "rollouts", ["vote_id"], unique=False)
    op.create_index("ix_rollouts_problem", "rollouts", ["problem_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rollouts_problem", table_name="rollouts")
    op.drop_index("ix_rollouts_vote", table_name="rollouts")
    op.drop_index(
        "ix_rollouts_untrained",
        table_name="rollouts",
        postgresql_where=sa.text("trained_in_version IS NULL"),
        sqlite_where=sa.text("trained_in_version IS NULL"),
    )
    op.drop_table("rollouts")
    op.drop_index("ix_votes_model_version", table_name="votes")
    op.drop_table("votes")
    op.drop_table("workers")
    op.drop_index(
        "ix_problems_lease",
        table_name="problems",
        postgresql_where=sa.text("status = 'claimed'"),
        sqlite_where=sa.text("status = 'claimed'"),
    )
    op.drop_index(
        "ix_problems_claim",
        table_name="problems",
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.drop_index("ix_problems_batch_status", table_name="problems")
    op.drop_table("problems")
    op.drop_table("model_versions")
