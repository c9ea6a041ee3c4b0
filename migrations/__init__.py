"""Alembic environment and versions, installed as ``ttrl.migrations`` (see ttrl.db.migrate)."""
