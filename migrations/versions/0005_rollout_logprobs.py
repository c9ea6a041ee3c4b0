"""The engine's logprob of each rollout token (``rollouts.logprobs``), the behaviour policy
of the trainer's importance-sampling correction; NULL where the engine gave none.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rollouts", sa.Column("logprobs", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("rollouts", "logprobs")
