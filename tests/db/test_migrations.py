"""Alembic migrations up and down on both databases, and in step with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ttrl.db import make_engine, migrate
from ttrl.db.migrate import SchemaOutOfDate
from ttrl.db.models import Base


def test_upgrade_to_head_and_downgrade_to_base(db_url: str) -> None:
    engine = make_engine(db_url)
    assert migrate.current(engine) is None
    with pytest.raises(SchemaOutOfDate, match="run `ttrl db upgrade`"):
        migrate.require_head(engine)

    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head(engine)
    migrate.require_head(engine)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("problems")}
    assert {"ix_problems_claim", "ix_problems_lease"} <= indexes

    migrate.upgrade(engine)  # idempotent at head
    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_models_and_migrations_agree(fresh_pg_url: str) -> None:
    # PostgreSQL reflects everything the models declare (SQLite cannot reflect DESC indexes).
    engine = make_engine(fresh_pg_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], "models changed without a migration: run alembic revision --autogenerate"
