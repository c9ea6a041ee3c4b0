"""The problem queue: every state transition of a problem, each one SQL statement, here only.

States and transitions::

    queued --claim--> claimed --complete_pass--> queued (more passes wanted) | done
                      claimed --complete_pass(settle)--> done, settled (the pass policy)
                      claimed --fail / reap-----> queued (attempts left)     | failed
                      claimed --release-------->  queued (attempt not counted)
    failed  --requeue------------------------------> queued (fresh attempts; ``ttrl requeue``)
    done    --requeue(status="done")---------------> queued (one more pass; not settled)
    queued | failed --refund-----------------------> queued (the engine's fault: attempt back)

A claim is a lease: ``claimed_by`` owns the problem until ``lease_until``; ``renew`` extends it,
``reap`` returns expired leases to the queue. Transitions by a worker that no longer holds the
lease raise :class:`LeaseLost` and change nothing. Claim order: priority (high first), then
first in, first out by ``updated_at``, which for a queued problem is when it (re-)entered the
queue: a problem back for its next pass, a retry or a reaped lease goes to the back.
Every function takes a Connection inside the caller's transaction (``ttrl.db.transaction``),
so the daemon can advance a problem in the same transaction that stores its vote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ttrl.db.connection import is_postgres, utcnow
from ttrl.db.models import Problem

P = Problem.__table__.c

# Rows per INSERT statement when enqueueing: well under SQLite's 32,766 bound parameters.
_INSERT_CHUNK = 500
MAX_NAME_CHARS = 255  # external_id and batch are VARCHAR(255)
INT32 = (-(2**31), 2**31 - 1)  # priority and passes are 32-bit INTEGER columns
_SURROGATE = re.compile("[\ud800-\udfff]")


class LeaseLost(RuntimeError):
    """The worker no longer holds the problem's lease (expired and reaped, or never held)."""


class InvalidProblem(ValueError):
    """A problem that cannot be stored as given; the message names it and the field."""


@dataclass(frozen=True)
class NewProblem:
    """A problem to enqueue, as validated by ``ttrl.intake``."""

    prompt: str
    external_id: str | None = None
    reference_answer: str | None = None
    batch: str = "default"
    passes: int = 1
    priority: int = 0
    meta: dict[str, Any] | None = None
    fixed_passes: bool = False


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


@dataclass
class EnqueueResult:
    inserted: int = 0
    already_present: list[str] = field(default_factory=list)


def text_defect(text: str) -> str | None:
    """Why ``text`` cannot be stored exactly on both databases, or None.

    PostgreSQL text cannot hold NUL; a lone UTF-16 surrogate (from a JSON escape such as
    ``\\ud800``) is not Unicode and encodes to UTF-8 on neither database.
    """
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store; remove it"
    if not text.isascii() and (bad := _SURROGATE.search(text)):
        return (
            f"contains a lone UTF-16 surrogate (\\u{ord(bad.group()):04x}) at character "
            f"{bad.start() + 1}, which is not valid Unicode; fix the escape or the encoder"
        )
    return None


def problem_defect(p: NewProblem) -> str | None:
    """Why ``p`` cannot be enqueued, or None: the same rules on SQLite and PostgreSQL.

    Field names are those of problem files (``id`` is ``external_id``).
    """
    if not isinstance(p.prompt, str) or not p.prompt.strip():
        return "missing prompt (a non-empty string is required)"
    texts = (
        ("prompt", p.prompt),
        ("id", p.external_id),
        ("reference_answer", p.reference_answer),
        ("batch", p.batch),
    )
    for name, value in texts:
        if value is None and name in ("id", "reference_answer"):
            continue
        if not isinstance(value, str):
            return f"field {name!r} must be a string, not {type(value).__name__}"
        if reason := text_defect(value):
            return f"prompt {reason}" if name == "prompt" else f"field {name!r} {reason}"
        if name in ("id", "batch") and len(value) > MAX_NAME_CHARS:
            return f"field {name!r} has {len(value)} characters, over {MAX_NAME_CHARS}"
    numbers = (("passes", p.passes), ("priority", p.priority))
    for name, number in numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            return f"field {name!r} must be an integer, not {type(number).__name__}"
    if p.passes < 1:
        return f"field 'passes' must be >= 1, got {p.passes}"
    if not isinstance(p.fixed_passes, bool):
        return f"field 'fixed_passes' must be true or false, not {type(p.fixed_passes).__name__}"
    for name, number in numbers:
        if not INT32[0] <= number <= INT32[1]:
            return f"field {name!r} is {number}, outside the 32-bit integer range"
    return _meta_defect(p.meta)


def _meta_defect(meta: Any) -> str | None:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        return f"field 'meta' must be a JSON object, not {type(meta).__name__}"
    try:
        json.dumps(meta, allow_nan=False)
    except ValueError as exc:
        return f"field 'meta' is not storable JSON ({exc}); NaN and Infinity have no JSON form"
    except TypeError as exc:
        return f"field 'meta' is not JSON: {exc}"
    except RecursionError:
        return "field 'meta' is nested too deeply"
    return None


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
        .where(_held_by(worker), P.id.in_(list(ids)))
        .values(lease_until=now + timedelta(seconds=lease_s), updated_at=now)
        .returning(P.id)
    )
    return set(conn.execute(stmt).scalars())


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
        conn, problem_id, worker, status=_retry_or_fail(max_attempts), last_error=reason
    )


def _leave_claim(conn: Connection, problem_id: int, worker: str, **values: Any) -> str:
    """End ``worker``'s claim on one problem with ``values``; returns the new status."""
    stmt = (
        update(Problem)
        .where(_held_by(worker), P.id == problem_id)
        .values(claimed_by=None, lease_until=None, updated_at=utcnow(), **values)
        .returning(P.status)
    )
    status = conn.execute(stmt).scalar_one_or_none()
    if status is None:
        raise LeaseLost(f"problem {problem_id} is not claimed by worker {worker!r}")
    return status


def release(conn: Connection, ids: Sequence[int], worker: str) -> int:
    """Give claimed problems back untouched (e.g. on shutdown); the attempt is not counted."""
    if not ids:
        return 0
    stmt = (
        update(Problem)
        .where(_held_by(worker), P.id.in_(list(ids)))
        .values(
            status="queued",
            claimed_by=None,
            lease_until=None,
            attempts=_greatest(conn, P.attempts - 1, 0),
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
            status=_retry_or_fail(max_attempts),
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


def requeue_failed(conn: Connection, batch: str | None = None) -> int:
    """Give ``failed`` problems a fresh set of attempts (an operator's retry)."""
    return requeue(conn, "failed", batch=batch)


REQUEUABLE = ("failed", "done")


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
            attempts=_greatest(conn, P.attempts - 1, 0),
            updated_at=utcnow(),
        )
    )
    return conn.execute(stmt).rowcount


def _greatest(conn: Connection, a: Any, b: Any) -> Any:
    return func.greatest(a, b) if is_postgres(conn) else func.max(a, b)


def depth(conn: Connection) -> list[tuple[str, str, int]]:
    """``(batch, status, count)`` for every batch and status present."""
    stmt = (
        select(P.batch, P.status, func.count())
        .group_by(P.batch, P.status)
        .order_by(P.batch, P.status)
    )
    return [(b, s, n) for b, s, n in conn.execute(stmt)]


def _held_by(worker: str) -> Any:
    return and_(P.status == "claimed", P.claimed_by == worker)


def _retry_or_fail(max_attempts: int) -> Any:
    return case((P.attempts >= max_attempts, "failed"), else_="queued")
