"""The ``problems`` columns and the SQL pieces the queue's transitions share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func
from sqlalchemy.engine import Connection

from ttrl.db.connection import is_postgres
from ttrl.db.models import Problem

P = Problem.__table__.c


def greatest(conn: Connection, a: Any, b: Any) -> Any:
    """SQL ``greatest(a, b)`` on PostgreSQL, ``max(a, b)`` on SQLite."""
    return func.greatest(a, b) if is_postgres(conn) else func.max(a, b)


def held_by(worker: str) -> Any:
    """Rows ``worker`` holds the lease of."""
    return and_(P.status == "claimed", P.claimed_by == worker)


def retry_or_fail(max_attempts: int) -> Any:
    """``queued`` again, or ``failed`` once ``max_attempts`` claims are spent."""
    return case((P.attempts >= max_attempts, "failed"), else_="queued")
