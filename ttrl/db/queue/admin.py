"""Problems into the queue and back: ``enqueue``, the operator's ``requeue``, the engine's
``refund`` of an attempt, and ``depth``, the count by batch and status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ttrl.db.connection import is_postgres, utcnow
from ttrl.db.models import Problem
from ttrl.db.queue.columns import P, greatest
from ttrl.db.queue.problems import InvalidProblem, NewProblem, problem_defect

# Rows per INSERT statement when enqueueing: well under SQLite's 32,766 bound parameters.
_INSERT_CHUNK = 500
REQUEUABLE = ("failed", "done")


@dataclass
class EnqueueResult:
    inserted: int = 0
    already_present: list[str] = field(default_factory=list)


def enqueue(conn: Connection, problems: Iterable[NewProblem]) -> EnqueueResult:
    """Insert problems as ``queued``. A problem whose ``external_id`` exists is left as it is.

    Raises:
        InvalidProblem: a problem breaks :func:`problem_defect`'s rules (checked before its
            row is sent, the same on both databases); roll the transaction back.
    """
    insert = postgresql.insert if is_postgres(conn) else sqlite.insert
    now = utcnow()
    result = EnqueueResult()
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        if not chunk:
            return
        stmt = insert(Problem).on_conflict_do_nothing(index_elements=["external_id"])
        new_ids = set(conn.execute(stmt.values(chunk).returning(P.external_id)).scalars().all())
        result.inserted += len(
            [r for r in chunk if r["external_id"] is None or r["external_id"] in new_ids]
        )
        result.already_present.extend(
            r["external_id"]
            for r in chunk
            if r["external_id"] is not None and r["external_id"] not in new_ids
        )
        chunk.clear()

    for index, p in enumerate(problems):
        if reason := problem_defect(p):
            raise InvalidProblem(f"problem #{index + 1} (id {p.external_id!r}): {reason}")
        chunk.append(
            {
                "external_id": p.external_id,
                "batch": p.batch,
                "prompt": p.prompt,
                "reference_answer": p.reference_answer,
                "meta": p.meta,
                "status": "queued",
                "priority": p.priority,
                "passes_wanted": p.passes,
                "passes_done": 0,
                "fixed_passes": p.fixed_passes,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(chunk) >= _INSERT_CHUNK:
            flush()
    flush()
    return result


def requeue_failed(conn: Connection, batch: str | None = None) -> int:
    """Give ``failed`` problems a fresh set of attempts (an operator's retry)."""
    return requeue(conn, "failed", batch=batch)


def requeue(
    conn: Connection,
    status: str = "failed",
    batch: str | None = None,
    error: str | None = None,
    dry_run: bool = False,
) -> int:
    """The operator's retry (``ttrl requeue``): ``failed`` problems get a fresh set of
    attempts; ``done`` ones one more pass (voted by the version serving then). ``batch``
    and ``error`` (a substring of ``last_error``) narrow the selection. Returns the count
    (with ``dry_run``: what would be requeued, nothing changed)."""
    if status not in REQUEUABLE:
        raise ValueError(f"requeue status must be one of {', '.join(REQUEUABLE)}, not {status!r}")
    where = [P.status == status]
    if batch is not None:
        where.append(P.batch == batch)
    if error is not None:
        where.append(P.last_error.contains(error, autoescape=True))
    if dry_run:
        return conn.execute(select(func.count()).select_from(Problem).where(*where)).scalar_one()
    values: dict[str, Any] = {"status": "queued", "attempts": 0, "updated_at": utcnow()}
    if status == "done":
        values["passes_wanted"] = P.passes_done + 1
        values["settled"] = False
    return conn.execute(update(Problem).where(*where).values(**values)).rowcount


def refund(conn: Connection, ids: Sequence[int]) -> int:
    """Take back the attempt counted by :func:`fail` for problems the engine, not the
    problem, failed (the circuit breaker): ``failed`` ones are queued again. Problems that
    another worker claimed meanwhile are left alone."""
    if not ids:
        return 0
    stmt = (
        update(Problem)
        .where(P.id.in_(list(ids)), P.status.in_(("queued", "failed")))
        .values(
            status="queued",
            attempts=greatest(conn, P.attempts - 1, 0),
            updated_at=utcnow(),
        )
    )
    return conn.execute(stmt).rowcount


def depth(conn: Connection) -> list[tuple[str, str, int]]:
    """``(batch, status, count)`` for every batch and status present."""
    stmt = (
        select(P.batch, P.status, func.count())
        .group_by(P.batch, P.status)
        .order_by(P.batch, P.status)
    )
    return [(b, s, n) for b, s, n in conn.execute(stmt)]
