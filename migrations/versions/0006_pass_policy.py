"""The adaptive pass policy: ``problems.settled`` and ``problems.fixed_passes``, and the
queue view's count of settled problems.

Revision ID: 0006
Revises: 0005

``settled``: the daemon's pass policy (``daemon.passes``) ended the problem's passes early,
its answer stable (status ``done``, passes left unspent). ``fixed_passes``: the problem gets
exactly ``passes_wanted`` passes whatever the policy (a problem file's ``fixed_passes``).
``v_queue`` gains ``settled`` per (batch, status), and its ``passes_left`` no longer counts
the passes a settled problem will not get. 0002's dialect helpers spell the timestamps.
"""

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _views_0002() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ttrl_migration_0002", Path(__file__).with_name("0002_dashboard_views.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _queue_view(d: Any) -> str:
    """v_queue over the new columns; ``d`` is 0002's ``_Dialect``."""
    return f"""
SELECT batch, status,
    count(*) AS problems,
    CAST(sum(CASE WHEN settled THEN 0 ELSE passes_wanted - passes_done END) AS BIGINT)
        AS passes_left,
    min(created_at) AS oldest_created_at,
    {d.age_s("min(created_at)")} AS oldest_age_s,
    {d.age_s("min(updated_at)")} AS longest_in_status_s,
    CAST(sum(CASE WHEN status = 'claimed' AND {d.before_now("lease_until")} THEN 1 ELSE 0 END)
        AS BIGINT) AS expired_leases,
    CAST(sum(CASE WHEN settled THEN 1 ELSE 0 END) AS BIGINT) AS settled
FROM problems
GROUP BY batch, status"""


def upgrade() -> None:
    false = sa.false()
    op.add_column(
        "problems", sa.Column("settled", sa.Boolean(), nullable=False, server_default=false)
    )
    op.add_column(
        "problems", sa.Column("fixed_passes", sa.Boolean(), nullable=False, server_default=false)
    )
    d = _views_0002()._Dialect(op.get_bind().dialect.name)
    op.execute("DROP VIEW v_queue")
    op.execute(f"CREATE VIEW v_queue AS {_queue_view(d)}")


def downgrade() -> None:
    v2 = _views_0002()
    op.execute("DROP VIEW v_queue")
    sql = v2._view_sql(v2._Dialect(op.get_bind().dialect.name))["v_queue"]
    op.execute(f"CREATE VIEW v_queue AS {sql}")
    # Native on both (SQLite >= 3.35), as in 0002: no batch-mode rebuild of problems.
    op.execute("ALTER TABLE problems DROP COLUMN fixed_passes")
    op.execute("ALTER TABLE problems DROP COLUMN settled")
