"""The model-version state machine: the model_versions, lineages and guard_decisions tables.

A version is recorded ``active`` once its checkpoint files are complete (retiring its
parent), or ``rolled_back`` when the guard refused it; a rollback makes an earlier one
``active`` again; a new lineage retires them all. Each guard check leaves one
``guard_decisions`` row per signal, which :func:`best_version` reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from ttrl.daemon.votes import consume_untrained, mark_version_consumed
from ttrl.db.connection import utcnow
from ttrl.db.models import VERSION_STATUSES, GuardDecision, Lineage, ModelVersion

MV = ModelVersion.__table__.c


@dataclass(frozen=True)
class VersionColumns:
    """The figures of an update that ``model_versions`` keeps in columns (dashboards read
    them). Built field by field from the update's metrics (``ttrl.daemon.learner``): a
    renamed metric is a type error there, not a column that silently stays NULL."""

    loss: float | None = None
    kl: float | None = None
    entropy: float | None = None
    clip_frac: float | None = None
    grad_norm: float | None = None
    mean_reward: float | None = None
    n_groups: int | None = None
    n_tokens: int | None = None
    train_s: float | None = None
    swap_s: float | None = None
    canary_pass1: float | None = None


def add_version(
    conn: Connection,
    version: int,
    parent: int | None,
    path: str | None,
    columns: VersionColumns,
    metrics: dict[str, Any] | None = None,
    status: str = "active",
) -> None:
    """Record a model version whose checkpoint files are complete, with its ``columns`` and
    every figure of the update in ``metrics`` (JSON). An ``active`` one retires its parent;
    a ``rolled_back`` one (refused by the guard) changes nothing else."""
    if status not in VERSION_STATUSES:
        raise ValueError(f"model version status {status!r} is not one of {VERSION_STATUSES}")
    conn.execute(
        insert(ModelVersion).values(
            version=version,
            parent=parent,
            path=path,
            status=status,
            created_at=utcnow(),
            metrics=metrics,
            **asdict(columns),
        )
    )
    if parent is not None and status == "active":
        conn.execute(
            update(ModelVersion)
            .where(MV.version == parent, MV.status == "active")
            .values(status="retired")
        )


def newest_active_version(conn: Connection) -> tuple[int, str | None] | None:
    """``(version, checkpoint path)`` of the newest active version, or None before any update."""
    row = conn.execute(
        select(MV.version, MV.path)
        .where(MV.status == "active")
        .order_by(MV.version.desc())
        .limit(1)
    ).first()
    return (row.version, row.path) if row else None


def newest_version_number(conn: Connection) -> int:
    """The highest version number ever recorded (rolled back ones included), 0 if none."""
    return conn.execute(select(func.coalesce(func.max(MV.version), 0))).scalar_one()


def best_version(conn: Connection, below: int, since: int = 0) -> tuple[int, str | None] | None:
    """The version to roll back to from ``below``: among the versions before it (and from
    ``since`` on: the current lineage's) that the guard probed and passed (no tripped
    hold/rollback signal) and that were never rolled back, the best canary pass@1 (the
    newest on ties and without canaries); None means the base model."""
    g = GuardDecision.__table__.c
    probed = select(g.version).group_by(g.version)
    failed = select(g.version).where(g.tripped, g.action.in_(("hold", "rollback")))
    row = conn.execute(
        select(MV.version, MV.path)
        .where(
            MV.version < below,
            MV.version >= since,
            MV.status != "rolled_back",
            MV.version.in_(probed.scalar_subquery()),
            MV.version.not_in(failed.scalar_subquery()),
        )
        .order_by(func.coalesce(MV.canary_pass1, -1.0).desc(), MV.version.desc())
        .limit(1)
    ).first()
    return (row.version, row.path) if row else None


def roll_back(conn: Connection, bad: int, to: int | None) -> None:
    """Mark ``bad`` rolled back and make ``to`` (None: the base) the active version again.
    The untrained rollouts ``bad`` sampled are consumed: no update learns from them."""
    conn.execute(update(ModelVersion).where(MV.version == bad).values(status="rolled_back"))
    others = update(ModelVersion).where(MV.status == "active")
    if to is not None:
        others = others.where(MV.version != to)
        conn.execute(update(ModelVersion).where(MV.version == to).values(status="active"))
    conn.execute(others.values(status="retired"))
    mark_version_consumed(conn, bad)


def record_decisions(conn: Connection, version: int, worker: str, decisions: Sequence[Any]) -> None:
    """One ``guard_decisions`` row per signal (``ttrl.daemon.guard.Decision``)."""
    now = utcnow()
    conn.execute(
        insert(GuardDecision),
        [
            {
                "version": version,
                "signal": d.signal,
                "value": d.value,
                "threshold": d.threshold,
                "tripped": d.tripped,
                "action": d.action,
                "worker": worker,
                "created_at": now,
            }
            for d in decisions
        ],
    )


@dataclass(frozen=True)
class LineageRecord:
    model: str
    path: str
    fingerprint: str
    first_version: int
    created_at: datetime


def current_lineage(conn: Connection) -> LineageRecord | None:
    """The base model the database's model versions descend from (None: never recorded)."""
    L = Lineage.__table__.c
    row = conn.execute(
        select(L.model, L.path, L.fingerprint, L.first_version, L.created_at)
        .order_by(L.id.desc())
        .limit(1)
    ).first()
    return LineageRecord(*row) if row else None


def start_lineage(
    conn: Connection, model: str, path: str, fingerprint: str, retire: bool = False
) -> int:
    """Record ``model`` as the base of the versions from now on; returns the first version
    number of the lineage. With ``retire`` the previous lineage ends: its active versions
    are retired (nothing resumes them) and its untrained rollouts consumed (another model
    sampled them: no update of this one trains on them)."""
    first = newest_version_number(conn) + 1
    if retire:
        conn.execute(update(ModelVersion).where(MV.status == "active").values(status="retired"))
        consume_untrained(conn)
    conn.execute(
        insert(Lineage).values(
            model=model,
            path=path,
            fingerprint=fingerprint,
            first_version=first if retire else 1,
            created_at=utcnow(),
        )
    )
    return first if retire else 1


@dataclass(frozen=True)
class StoredBaseline:
    """The guard's probe and baseline stats of the current lineage, the settings they were
    sampled with and the version that measured them (0: the base model)."""

    probe: list[tuple[str, str | None]]
    settings: dict[str, Any]
    stats: dict[str, Any]
    version: int


def stored_baseline(conn: Connection) -> StoredBaseline | None:
    """The current lineage's stored guard baseline; None before one was measured."""
    L = Lineage.__table__.c
    row = conn.execute(
        select(L.guard_probe, L.guard_baseline, L.guard_baseline_version)
        .order_by(L.id.desc())
        .limit(1)
    ).first()
    if row is None or row.guard_baseline is None:
        return None
    stored = row.guard_probe or {}
    probe = [(prompt, reference) for prompt, reference in stored.get("prompts", [])]
    settings = stored.get("settings", {})
    return StoredBaseline(probe, settings, row.guard_baseline, row.guard_baseline_version)


def store_baseline(
    conn: Connection,
    probe: Sequence[tuple[str, str | None]],
    settings: dict[str, Any],
    stats: dict[str, Any],
    version: int,
) -> None:
    """Keep the guard's ``probe``, the ``settings`` it was sampled with and the baseline
    ``stats`` (JSON: finite numbers or null) with the current lineage."""
    L = Lineage.__table__.c
    newest = select(func.max(L.id)).scalar_subquery()
    conn.execute(
        update(Lineage)
        .where(L.id == newest)
        .values(
            guard_probe={"prompts": [list(p) for p in probe], "settings": settings},
            guard_baseline=stats,
            guard_baseline_version=version,
        )
    )
