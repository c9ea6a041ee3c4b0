"""Dashboard views: accuracy by version and batch, queue, throughput, versions, workers, answers.

Revision ID: 0002
Revises: 0001

The views are plain SQL aggregates over what the daemon stores: grading against a reference
answer happened once, in Python, when each vote was stored (``votes.label_correct``,
``reward_accuracy``, ``pass_at_1``). Both dialects get the same columns with the same meaning;
only the clock, hour truncation and timestamp arithmetic are spelled per dialect. Ratios are
DOUBLE PRECISION on both. Boolean flags computed here are 0/1 integers on both.

Also added, for speed (``benchmarks/views.py``):
- ``votes.completion_tokens``: the summed ``n_tokens`` of the vote's rollouts, written with
  the vote, so token means per version are an aggregate over votes, not over N x more
  rollouts. Backfilled here for votes stored before this revision.
- ``ix_problems_batch_id``: the per-batch views join votes to (problem id, batch) pairs
  read from this index alone (an index-only scan), not from the problems heap, which the
  prompts make wide.

The SQL is frozen into this file on purpose: a later change to a view is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = (
    "v_accuracy_by_version",
    "v_accuracy_by_version_batch",
    "v_queue",
    "v_throughput_hourly",
    "v_versions",
    "v_workers",
    "v_answers",
    "v_answer_history",
)


class _Dialect:
    """The few expressions PostgreSQL and SQLite spell differently (timestamps: naive UTC)."""

    def __init__(self, name: str) -> None:
        self.pg = name == "postgresql"
        self.now = "(now() AT TIME ZONE 'utc')" if self.pg else "'now'"

    def seconds_between(self, later: str, earlier: str) -> str:
        if self.pg:
            return f"CAST(EXTRACT(EPOCH FROM {later} - {earlier}) AS DOUBLE PRECISION)"
        return f"((julianday({later}) - julianday({earlier})) * 86400.0)"

    def age_s(self, ts: str) -> str:
        """Seconds from ``ts`` to now."""
        return self.seconds_between(self.now, ts)

    def before_now(self, ts: str) -> str:
        return f"{ts} < {self.now}" if self.pg else f"julianday({ts}) < julianday('now')"

    def hour(self, ts: str) -> str:
        if self.pg:
            return f"date_trunc('hour', {ts})"
        return f"strftime('%Y-%m-%d %H:00:00', {ts})"

    def distinct(self, a: str, b: str) -> str:
        """NULL-safe inequality."""
        return f"{a} IS DISTINCT FROM {b}" if self.pg else f"{a} IS NOT {b}"


def _f(expr: str) -> str:
    # PostgreSQL's avg over integers is NUMERIC; dashboards want one float type everywhere.
    return f"CAST({expr} AS DOUBLE PRECISION)"


def _rate(condition: str) -> str:
    return _f(f"avg(CASE WHEN {condition} THEN 1 ELSE 0 END)")


# TTRL (Zuo et al. 2025, §4) metrics per group of votes. label_accuracy is maj@N against the
# reference; it, reward_accuracy and pass_at_1 average only the votes that have a reference
# (the others are NULL and avg skips them). majority_ratio is the vote share count/N.
_ACCURACY_COLUMNS = f"""
    count(*) AS votes,
    CAST(sum(v.n) AS BIGINT) AS rollouts,
    count(v.label_correct) AS with_reference,
    {_f("avg(CASE WHEN v.label_correct THEN 1 WHEN NOT v.label_correct THEN 0 END)")}
        AS label_accuracy,
    {_f("avg(v.reward_accuracy)")} AS reward_accuracy,
    {_f("avg(v.pass_at_1)")} AS pass_at_1,
    {_f("avg(v.share)")} AS majority_ratio,
    {_f("avg(v.n_distinct)")} AS mean_distinct,
    {_rate("v.tie")} AS tie_rate,
    {_rate("v.label IS NULL")} AS no_answer_rate,
    {_f("sum(v.completion_tokens)")}
        / NULLIF(sum(CASE WHEN v.completion_tokens IS NOT NULL THEN v.n END), 0)
        AS mean_completion_tokens,
    min(v.created_at) AS first_vote_at,
    max(v.created_at) AS last_vote_at"""


def _view_sql(d: _Dialect) -> dict[str, str]:
    return {
        "v_accuracy_by_version": f"""
SELECT v.model_version, {_ACCURACY_COLUMNS}
FROM votes v
GROUP BY v.model_version""",
        "v_accuracy_by_version_batch": f"""
SELECT v.model_version, p.batch, {_ACCURACY_COLUMNS}
FROM votes v JOIN problems p ON p.id = v.problem_id
GROUP BY v.model_version, p.batch""",
        "v_queue": f"""
SELECT batch, status,
    count(*) AS problems,
    CAST(sum(passes_wanted - passes_done) AS BIGINT) AS passes_left,
    min(created_at) AS oldest_created_at,
    {d.age_s("min(created_at)")} AS oldest_age_s,
    {d.age_s("min(updated_at)")} AS longest_in_status_s,
    CAST(sum(CASE WHEN status = 'claimed' AND {d.before_now("lease_until")} THEN 1 ELSE 0 END)
        AS BIGINT) AS expired_leases
FROM problems
GROUP BY batch, status""",
        "v_throughput_hourly": f"""
SELECT hour,
    CAST(sum(votes) AS BIGINT) AS votes,
    CAST(sum(rollouts) AS BIGINT) AS rollouts,
    CAST(sum(completion_tokens) AS BIGINT) AS completion_tokens,
    CAST(sum(updates) AS BIGINT) AS updates,
    CAST(sum(trained_tokens) AS BIGINT) AS trained_tokens,
    {_f("sum(train_s)")} AS train_s,
    {_f("sum(swap_s)")} AS swap_s
FROM (
    SELECT {d.hour("created_at")} AS hour, count(*) AS votes, sum(n) AS rollouts,
        coalesce(sum(completion_tokens), 0) AS completion_tokens, 0 AS updates,
        0 AS trained_tokens, 0.0 AS train_s, 0.0 AS swap_s
    FROM votes GROUP BY {d.hour("created_at")}
    UNION ALL
    SELECT {d.hour("created_at")}, 0, 0, 0, count(*), coalesce(sum(n_tokens), 0),
        coalesce(sum(train_s), 0.0), coalesce(sum(swap_s), 0.0)
    FROM model_versions GROUP BY {d.hour("created_at")}
) AS per_source
GROUP BY hour""",
        "v_versions": f"""
SELECT m.version, m.parent, m.status, m.created_at, m.path,
    m.loss, m.kl, m.entropy, m.clip_frac, m.grad_norm, m.mean_reward, m.n_groups,
    m.n_tokens AS trained_tokens, m.train_s, m.swap_s,
    {_f("m.n_tokens")} / NULLIF(m.train_s, 0) AS train_tokens_per_s,
    {d.seconds_between("m.created_at", "parent.created_at")} AS since_parent_s
FROM model_versions m LEFT JOIN model_versions parent ON parent.version = m.parent""",
        "v_workers": f"""
SELECT id, host, pid, role, state, started_at, heartbeat_at,
    {d.age_s("heartbeat_at")} AS heartbeat_age_s
FROM workers""",
        # The newest vote of a problem is its pass passes_done - 1 (a pass is voted and
        # counted in one transaction), so the join walks the unique (problem, pass) index.
        "v_answers": """
SELECT p.id AS problem_id, p.external_id, p.batch, p.status, p.passes_done, p.passes_wanted,
    p.answer, p.answer_share, p.answer_version, p.reference_answer,
    v.label_correct AS answer_correct, v.n_distinct, v.tie, p.updated_at
FROM problems p
LEFT JOIN votes v ON v.problem_id = p.id AND v.pass_index = p.passes_done - 1""",
        # label_changed compares canonical keys: an equivalent respelling is no change.
        "v_answer_history": f"""
SELECT v.problem_id, v.pass_index, v.model_version, v.label, v.share, v.n_distinct, v.tie,
    v.label_correct AS correct,
    LAG(v.label) OVER w AS previous_label,
    CASE WHEN LAG(v.pass_index) OVER w IS NULL THEN NULL
         WHEN {d.distinct("v.label_key", "LAG(v.label_key) OVER w")} THEN 1 ELSE 0 END
        AS label_changed,
    v.created_at
FROM votes v
WINDOW w AS (PARTITION BY v.problem_id ORDER BY v.pass_index)""",
    }


def upgrade() -> None:
    op.add_column("votes", sa.Column("completion_tokens", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE votes SET completion_tokens = "
        "(SELECT coalesce(sum(r.n_tokens), 0) FROM rollouts r WHERE r.vote_id = votes.id)"
    )
    op.create_index("ix_problems_batch_id", "problems", ["batch", "id"], unique=False)
    sql = _view_sql(_Dialect(op.get_bind().dialect.name))
    for name in VIEWS:
        op.execute(f"CREATE VIEW {name} AS {sql[name]}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index("ix_problems_batch_id", table_name="problems")
    # Native on both (SQLite >= 3.35). Alembic's batch mode would rebuild votes on SQLite,
    # and dropping the old table with foreign keys on cascades into rollouts.
    op.execute("ALTER TABLE votes DROP COLUMN completion_tokens")
