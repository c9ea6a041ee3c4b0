"""Shared fixtures: real SQLite files and a real, throw-away PostgreSQL database.

PostgreSQL comes from TTRL_TEST_PG_URL (default: the local server's `test` database, used only
to create and drop a private database per test session). When it is unreachable the
PostgreSQL tests skip, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from ttrl.db import make_engine, migrate

ADMIN_PG_URL = os.environ.get(
    "TTRL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_admin() -> Engine | None:
    engine = make_engine(ADMIN_PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {ADMIN_PG_URL} is required in CI: {exc}")
        return None
    return engine


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Engine | None]:
    admin = _pg_admin()
    yield admin
    if admin is not None:
        admin.dispose()


@pytest.fixture
def fresh_pg_url(pg_server: Engine | None) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    if pg_server is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_PG_URL}")
    name = f"ttrl_test_{uuid.uuid4().hex[:12]}"
    with pg_server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with pg_server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ttrl.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind, not yet migrated."""
    fixture = "fresh_sqlite_url" if request.param == "sqlite" else "fresh_pg_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database of each kind."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
