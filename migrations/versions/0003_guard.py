"""Collapse guard: one row per signal checked per model version; canary pass@1 per version;
the model version each worker serves (scale-out: rollout workers follow the learner).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = (
        sa.text("(now() AT TIME ZONE 'utc')")
        if op.get_bind().dialect.name == "postgresql"
        else sa.text("CURRENT_TIMESTAMP")
    )
    op.create_table(
        "guard_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("signal", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("tripped", sa.Boolean(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_guard_decisions_version", "guard_decisions", ["version"])
    # Plain ADD COLUMN (SQLite has it natively): a batch rebuild would lose the CHECKs.
    op.add_column("model_versions", sa.Column("canary_pass1", sa.Float(), nullable=True))
    op.add_column("workers", sa.Column("model_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "model_version")
    op.drop_column("model_versions", "canary_pass1")
    op.drop_index("ix_guard_decisions_version", table_name="guard_decisions")
    op.drop_table("guard_decisions")
