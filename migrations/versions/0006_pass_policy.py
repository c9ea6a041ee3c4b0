"""The adaptive pass policy: ``problems.settled`` and ``problems.fixed_passes``, and the
queue view's count of settled problems.

Revision ID: 0006
Revises: 0005

``settled``: the daemon's pass policy (``daemon.passes``) ended the problem's passes early,
its answer stable (status ``done``, passes left unspent). ``fixed_passes``: the problem gets
exactly ``passes_wanted`` passes whatever the policy (a problem file's ``fixed_passes``).
``v_queue`` gains ``settled`` per (batch, status), and its ``passes_left`` no longer counts
the passes a settled problem will not get; ``v_answers`` gains ``settled``. 0002's dialect
helpers spell the timestamps; a downgrade restores 0002's views, and a settled problem's
``passes_wanted`` becomes the passes it got (``done`` with nothing left, as 0005 knew it).
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


_ANSWERS_VIEW = """
SELECT p.id AS problem_id, p.external_id, p.batch, p.status, p.passes_done, p.passes_wanted,
    p.settled, p.answer, p.answer_share, p.answer_version, p.reference_answer,
    v.label_correct AS answer_correct, v.n_distinct, v.tie, p.updated_at
FROM problems p
LEFT JOIN votes v ON v.problem_id = p.id AND v.pass_index = p.passes_done - 1"""


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
    op.execute("DROP VIEW v_answers")
    op.execute(f"CREATE VIEW v_answers AS {_ANSWERS_VIEW}")


def downgrade() -> None:
    v2 = _views_0002()
    sql = v2._view_sql(v2._Dialect(op.get_bind().dialect.name))
    for name in ("v_queue", "v_answers"):
        op.execute(f"DROP VIEW {name}")
        op.execute(f"CREATE VIEW {name} AS {sql[name]}")
    op.execute("UPDATE problems SET passes_wanted = passes_done WHERE settled AND passes_done > 0")
    # Native on both (SQLite >= 3.35), as in 0002: no batch-mode rebuild of problems.
    op.execute("ALTER TABLE problems DROP COLUMN fixed_passes")
    op.execute("ALTER TABLE problems DROP COLUMN settled")
