"""Apply the Alembic migrations shipped in the package, programmatically."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("ttrl.migrations")))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default: the newest)."""
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema down to ``revision`` (``base`` drops everything ttrl made)."""
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


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
