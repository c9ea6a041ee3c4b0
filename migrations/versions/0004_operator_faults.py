"""Operator faults: the base model each lineage of model versions descends from (a
fingerprint of its files), and why a worker stopped (``workers.reason``).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = (
        sa.text("(now() AT TIME ZONE 'utc')")
        if op.get_bind().dialect.name == "postgresql"
        else sa.text("CURRENT_TIMESTAMP")
    )
    op.create_table(
        "lineages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("first_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("id"),
    )
    op.add_column("workers", sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "reason")
    op.drop_table("lineages")
