"""Apply the Alembic migrations shipped in the package, programmatically."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("ttrl.migrations")))
    return cfg


class MigrationRefused(ValueError):
    """A revision alembic cannot find or reach from where the schema is; the message lists
    the shipped revisions."""


def _run(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    cfg = _alembic_config(engine)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # An index build on a big table may take longer than database.statement_timeout_s.
                conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            cfg.attributes["connection"] = conn
            step(cfg, revision)
    except CommandError as exc:  # unknown, or e.g. a downgrade "to" a revision above
        shipped = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()]
        raise MigrationRefused(
            f"cannot migrate to {revision!r}: {exc}. Use head, base or one of "
            f"{', '.join(reversed(shipped))}; `ttrl db current` shows where the database is"
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default: the newest)."""
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema down to ``revision`` (``base`` drops everything ttrl made)."""
    _run(engine, command.downgrade, revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None when ttrl never migrated it."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head(engine: Engine) -> str:
    """The newest revision shipped with this ttrl."""
    heads = ScriptDirectory.from_config(_alembic_config(engine)).get_heads()
    return heads[0]


class SchemaOutOfDate(RuntimeError):
    """The database is not at the shipped head revision."""


def require_head(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` with the command to run when the schema lags."""
    at, want = current(engine), head(engine)
    if at != want:
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaOutOfDate(
            f"database {url} is at schema revision {at or 'none (empty)'}, this ttrl needs "
            f"{want}: run `ttrl db upgrade` first"
        )
