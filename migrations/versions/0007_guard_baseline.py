"""The collapse guard's probe and baseline, stored with the lineage they belong to
(``lineages.guard_probe``, ``guard_baseline``, ``guard_baseline_version``): measured once,
read back by a restarted daemon instead of sampled again.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("guard_probe", "guard_baseline", "guard_baseline_version")


def upgrade() -> None:
    op.add_column("lineages", sa.Column("guard_probe", sa.JSON(none_as_null=True), nullable=True))
    op.add_column(
        "lineages", sa.Column("guard_baseline", sa.JSON(none_as_null=True), nullable=True)
    )
    op.add_column("lineages", sa.Column("guard_baseline_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lineages") as batch:
        for column in COLUMNS:
            batch.drop_column(column)
