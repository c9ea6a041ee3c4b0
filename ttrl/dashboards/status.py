"""``ttrl status``: the queue, the latest model versions with their accuracy, the workers.

Rich tables built from the dashboard views, so the terminal shows the numbers a SQL
dashboard charts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ttrl.dashboards import views
from ttrl.db.models import PROBLEM_STATUSES, Worker

# Three missed beats of the daemon's default 10 s heartbeat.
DEFAULT_STALE_AFTER_S = 30.0
DEFAULT_VERSIONS_SHOWN = 5


def format_age(seconds: float | None) -> str:
    """A short human duration: ``42s``, ``7m``, ``3h05m``, ``2d04h``; ``-`` for none."""
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def queue_table(conn: Connection) -> Table:
    """Problems per batch and status, those of them settled early by the pass policy, the
    longest wait in the queue, expired leases.

    The wait counts from when a problem last entered the queue (``updated_at``): a problem
    requeued for its next pass has just arrived, however old it is."""
    q = views.queue.c
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    longest_wait: dict[str, float] = {}
    expired: dict[str, int] = defaultdict(int)
    settled: dict[str, int] = defaultdict(int)
    for row in conn.execute(select(views.queue).order_by(q.batch, q.status)):
        counts[row.batch][row.status] = row.problems
        expired[row.batch] += row.expired_leases
        settled[row.batch] += row.settled
        if row.status == "queued":
            longest_wait[row.batch] = row.longest_in_status_s

    table = Table(title="queue")
    table.add_column("batch")
    for col in (*PROBLEM_STATUSES, "settled", "total", "longest wait", "expired leases"):
        table.add_column(col, justify="right")
    for batch, by_status in counts.items():
        table.add_row(
            batch,
            *(str(by_status.get(s, 0)) for s in PROBLEM_STATUSES),
            str(settled[batch]),
            str(sum(by_status.values())),
            format_age(longest_wait.get(batch)),
            f"[red]{expired[batch]}[/]" if expired[batch] else "0",
        )
    if not counts:
        table.caption = "the queue is empty: add problems with `ttrl enqueue FILE`"
    elif sum(expired.values()):
        table.caption = "expired leases go back to the queue at the next reap of a live worker"
    elif sum(settled.values()):
        table.caption = "settled: done before their passes ran out, the answer stable"
    return table


def versions_table(conn: Connection, shown: int = DEFAULT_VERSIONS_SHOWN) -> Table:
    """The newest model versions (0: the base model) with their update and vote figures."""
    acc = {r.model_version: r for r in conn.execute(select(views.accuracy_by_version))}
    made = {r.version: r for r in conn.execute(select(views.versions))}
    table = Table(title=f"model versions (newest {shown})")
    for col in (
        "version",
        "status",
        "created",
        "train",
        "swap",
        "votes",
        "label acc",
        "reward acc",
        "vote share",
        "pass@1",
        "distinct",
        "tokens/rollout",
    ):
        table.add_column(col, justify="left" if col in ("status", "created") else "right")
    for version in sorted(acc.keys() | made.keys(), reverse=True)[:shown]:
        m: Any = made.get(version)
        a: Any = acc.get(version)
        table.add_row(
            str(version),
            m.status if m else ("base" if version == 0 else "-"),
            m.created_at.strftime("%Y-%m-%d %H:%M") if m else "-",
            f"{m.train_s:.1f}s" if m and m.train_s is not None else "-",
            f"{m.swap_s:.2f}s" if m and m.swap_s is not None else "-",
            str(a.votes) if a else "0",
            _pct(a.label_accuracy) if a else "-",
            _pct(a.reward_accuracy) if a else "-",
            _pct(a.majority_ratio) if a else "-",
            _pct(a.pass_at_1) if a else "-",
            _num(a.mean_distinct) if a else "-",
            _num(a.mean_completion_tokens, ".0f") if a else "-",
        )
    if not acc and not made:
        table.caption = "no votes yet: start the daemon with `ttrl serve`"
    else:
        table.caption = "accuracies count problems with a reference answer only"
    return table


def workers_table(conn: Connection, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> Table:
    """Registered workers; a heartbeat older than ``stale_after_s`` is flagged."""
    w = views.workers.c
    table = Table(title="workers")
    for col in ("worker", "host", "pid", "role", "state", "up", "heartbeat"):
        table.add_column(col, justify="right" if col in ("pid", "up", "heartbeat") else "left")
    rows = conn.execute(select(views.workers).order_by(w.heartbeat_at.desc())).all()
    stopped = select(Worker.id, Worker.reason).where(Worker.reason.is_not(None))
    reasons = {r.id: r.reason for r in conn.execute(stopped)}
    for row in rows:
        age = format_age(row.heartbeat_age_s) + " ago"
        live = row.state not in ("stopped", "halted")
        stale = live and row.heartbeat_age_s > stale_after_s
        table.add_row(
            row.id,
            row.host,
            str(row.pid),
            row.role,
            f"[red]{row.state} (stale)[/]"
            if stale
            else (f"{row.state}: {reasons[row.id]}" if row.id in reasons else row.state),
            format_age((row.heartbeat_at - row.started_at).total_seconds()) if live else "-",
            f"[red]{age}[/]" if stale else age,
        )
    if not rows:
        table.caption = "no worker has registered"
    return table


def status_tables(conn: Connection, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[Table]:
    """The tables ``ttrl status`` prints, in order."""
    return [queue_table(conn), versions_table(conn), workers_table(conn, stale_after_s)]
