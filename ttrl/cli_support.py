"""What every ttrl command shares: common options, consoles, exit codes, clear failures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from ttrl.config import ConfigError, Settings, load_settings
from ttrl.db import make_engine, migrate
from ttrl.db.migrate import MigrationRefused, SchemaOutOfDate

PIPED_WIDTH = 200  # tables written to a file or a pipe are not squeezed into 80 columns


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


out = _console()
err = _console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML file deep-merged over configs/default.yaml."),
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (prefer TTRL_DB_URL: it keeps secrets off ps)."),
]

# Exit codes of `ttrl enqueue`, documented in the README.
EXIT_REJECTED, EXIT_USAGE, EXIT_PARTIAL = 1, 2, 3  # 0: all inserted
EXIT_CONFIG = 78  # EX_CONFIG of sysexits.h: `ttrl serve` cannot start with this configuration
# `ttrl serve` after the engine circuit breaker tripped: ttrl.daemon.service.EXIT_ENGINE_FAILURE


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    # The message is printed as written: "ttrl[plot]" is not rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def settings(config: Path | None, db: str | None, code: int = EXIT_USAGE) -> Settings:
    """The effective settings; a bad file or value exits with ``code`` and one line per
    problem that names the key."""
    try:
        return load_settings(config, db_url=db)
    except ConfigError as exc:
        raise fail(str(exc), code) from None
    except ValidationError as exc:
        raise fail(describe_invalid(exc, config), code) from None


def describe_invalid(exc: ValidationError, config: Path | None) -> str:
    """``key: what is wrong (got value)`` per error, and where values come from."""
    env = {name.upper() for name in os.environ}
    lines = []
    for e in exc.errors():
        variable = "TTRL_" + "__".join(str(p) for p in e["loc"]).upper()
        lines.append(
            f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']} "
            f"(got {e['input']!r:.80})" + (f", set by {variable}" if variable in env else "")
        )
    source = f"{config}, " if config else ""
    return (
        f"invalid configuration ({source}TTRL_* environment variables or the defaults):\n"
        + "\n".join(lines)
    )


@contextmanager
def database(
    cfg: Settings, *, require_schema: bool = True, create: bool = False
) -> Iterator[Engine]:
    """An engine for the configured database, with outages and old schemas said plainly.
    A SQLite file that does not exist is created only with ``create``."""
    try:
        engine = make_engine(cfg.db_url, cfg.database)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise fail(
            f"unusable database URL: {exc}; expected sqlite:///FILE or "
            "postgresql://USER@HOST:PORT/DB"
        ) from None
    url = engine.url.render_as_string(hide_password=True)
    file = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not create and file and file != ":memory:" and not Path(file).exists():
        engine.dispose()  # connecting would create an empty file
        raise fail(
            f"no database file {Path(file).resolve()}: run `ttrl db upgrade` with the same "
            "--db / TTRL_DB_URL to create it"
        )
    try:
        if require_schema:
            migrate.require_head(engine)
        yield engine
    except (SchemaOutOfDate, MigrationRefused) as exc:
        raise fail(str(exc)) from None
    except OperationalError as exc:
        reason = str(exc.orig).strip()
        if "timeout" in reason.lower() and "statement" not in reason.lower():
            reason += (
                f" (no answer within database.connect_timeout_s="
                f"{cfg.database.connect_timeout_s}s: is the server up and reachable?)"
            )
        raise fail(f"cannot use database {url}: {reason}") from None
    except DBAPIError as exc:
        # e.g. a value the database refuses: say which, without dumping the statement
        raise fail(f"database {url} refused the write: {exc.orig}") from None
    finally:
        engine.dispose()
