"""The workers table: each daemon process registers, beats its heart and says why it stopped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Connection

from ttrl.db.connection import utcnow
from ttrl.db.models import Worker


def register_worker(conn: Connection, worker_id: str, host: str, pid: int, role: str) -> None:
    now = utcnow()
    conn.execute(delete(Worker).where(Worker.id == worker_id))
    conn.execute(
        insert(Worker).values(
            id=worker_id,
            host=host,
            pid=pid,
            role=role,
            state="starting",
            started_at=now,
            heartbeat_at=now,
        )
    )


def heartbeat(
    conn: Connection,
    worker_id: str,
    state: str | None = None,
    version: int | None = None,
    reason: str | None = None,
) -> None:
    """Beat the worker's heart; a new ``state`` replaces the old one and its ``reason``."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if state is not None:
        values["state"] = state
        values["reason"] = reason
    if version is not None:
        values["model_version"] = version
    conn.execute(update(Worker).where(Worker.id == worker_id).values(**values))
