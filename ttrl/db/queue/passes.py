"""The end of a claimed pass: ``complete_pass`` (requeued for the next pass, or ``done``)
and ``fail`` (requeued for another attempt, or ``failed``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, update
from sqlalchemy.engine import Connection

from ttrl.db.connection import utcnow
from ttrl.db.models import Problem
from ttrl.db.queue.columns import P, held_by, retry_or_fail
from ttrl.db.queue.leases import LeaseLost


def complete_pass(
    conn: Connection,
    problem_id: int,
    worker: str,
    answer: str | None = None,
    share: float | None = None,
    version: int | None = None,
    settle: bool = False,
    passes_wanted: int | None = None,
) -> str:
    """Record one finished pass: requeue for the next pass, or mark ``done``.

    The pass policy may ``settle`` the problem (``done`` now, its passes left unspent, marked
    ``settled``) or give it ``passes_wanted`` in all (more passes for a split vote). The
    answer columns always hold the label voted by the newest pass. Returns the new status.
    """
    wanted: Any = P.passes_wanted if passes_wanted is None else passes_wanted
    status: Any = "done" if settle else case((P.passes_done + 1 >= wanted, "done"), else_="queued")
    return _leave_claim(
        conn,
        problem_id,
        worker,
        status=status,
        passes_done=P.passes_done + 1,
        passes_wanted=wanted,
        settled=settle,
        attempts=0,
        last_error=None,
        answer=answer,
        answer_share=share,
        answer_version=version,
    )


def fail(conn: Connection, problem_id: int, worker: str, reason: str, max_attempts: int) -> str:
    """An attempt at the current pass failed: requeue it, or mark ``failed`` after
    ``max_attempts`` claims. Returns the new status."""
    return _leave_claim(
        conn, problem_id, worker, status=retry_or_fail(max_attempts), last_error=reason
    )


def _leave_claim(conn: Connection, problem_id: int, worker: str, **values: Any) -> str:
    """End ``worker``'s claim on one problem with ``values``; returns the new status."""
    stmt = (
        update(Problem)
        .where(held_by(worker), P.id == problem_id)
        .values(claimed_by=None, lease_until=None, updated_at=utcnow(), **values)
        .returning(P.status)
    )
    status = conn.execute(stmt).scalar_one_or_none()
    if status is None:
        raise LeaseLost(f"problem {problem_id} is not claimed by worker {worker!r}")
    return status
