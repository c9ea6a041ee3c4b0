"""Claims as leases: ``claim`` takes queued problems for a worker until ``lease_until``,
``renew`` extends the leases it still holds, ``release`` gives them back untouched and
``reap`` returns expired ones to the queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.engine import Connection

from ttrl.db.connection import is_postgres, utcnow
from ttrl.db.models import Problem
from ttrl.db.queue.columns import P, greatest, held_by, retry_or_fail


class LeaseLost(RuntimeError):
    """The worker no longer holds the problem's lease (expired and reaped, or never held)."""


@dataclass(frozen=True)
class ClaimedProblem:
    id: int
    external_id: str | None
    batch: str
    prompt: str
    meta: dict[str, Any] | None
    passes_done: int
    passes_wanted: int
    priority: int
    attempts: int
    lease_until: datetime
    fixed_passes: bool = False


def claim(
    conn: Connection, k: int, worker: str, lease_s: float, now: datetime | None = None
) -> list[ClaimedProblem]:
    """Atomically move up to ``k`` queued problems to ``claimed`` by ``worker``.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets concurrent claimers pass each other. SQLite:
    the caller's write transaction (``BEGIN IMMEDIATE``) serialises claimers.
    """
    if k < 1:
        raise ValueError(f"claim k must be >= 1, got {k}")
    now = now or utcnow()
    lease_until = now + timedelta(seconds=lease_s)
    pick = (
        select(P.id)
        .where(P.status == "queued")
        .order_by(P.priority.desc(), P.updated_at, P.id)
        .limit(k)
    )
    if is_postgres(conn):
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        update(Problem)
        .where(P.id.in_(pick.scalar_subquery()))
        .values(
            status="claimed",
            claimed_by=worker,
            lease_until=lease_until,
            attempts=P.attempts + 1,
            updated_at=now,
        )
        .returning(
            P.id,
            P.external_id,
            P.batch,
            P.prompt,
            P.meta,
            P.passes_done,
            P.passes_wanted,
            P.priority,
            P.attempts,
            P.lease_until,
            P.fixed_passes,
        )
    )
    # RETURNING order is unspecified: within one claimed batch, priority first, then id.
    rows = [ClaimedProblem(**row._mapping) for row in conn.execute(stmt)]
    rows.sort(key=lambda r: (-r.priority, r.id))
    return rows


def renew(
    conn: Connection,
    ids: Sequence[int],
    worker: str,
    lease_s: float,
    now: datetime | None = None,
) -> set[int]:
    """Extend the leases ``worker`` still holds; returns the ids renewed (the rest are lost)."""
    if not ids:
        return set()
    now = now or utcnow()
    stmt = (
        update(Problem)
        .where(held_by(worker), P.id.in_(list(ids)))
        .values(lease_until=now + timedelta(seconds=lease_s), updated_at=now)
        .returning(P.id)
    )
    return set(conn.execute(stmt).scalars())


def release(conn: Connection, ids: Sequence[int], worker: str) -> int:
    """Give claimed problems back untouched (e.g. on shutdown); the attempt is not counted."""
    if not ids:
        return 0
    stmt = (
        update(Problem)
        .where(held_by(worker), P.id.in_(list(ids)))
        .values(
            status="queued",
            claimed_by=None,
            lease_until=None,
            attempts=greatest(conn, P.attempts - 1, 0),
            updated_at=utcnow(),
        )
    )
    return conn.execute(stmt).rowcount


def reap(conn: Connection, max_attempts: int, now: datetime | None = None) -> int:
    """Return every expired lease to the queue (or fail it after ``max_attempts`` claims)."""
    now = now or utcnow()
    stmt = (
        update(Problem)
        .where(P.status == "claimed", P.lease_until < now)
        .values(
            status=retry_or_fail(max_attempts),
            last_error=case(
                (P.attempts >= max_attempts, "lease expired on the last allowed attempt"),
                else_="lease expired",
            ),
            claimed_by=None,
            lease_until=None,
            updated_at=now,
        )
    )
    return conn.execute(stmt).rowcount
