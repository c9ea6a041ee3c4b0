"""Persistence: schema, connections, migrations and the problem queue."""

from ttrl.db.connection import make_engine, transaction, utcnow

__all__ = ["make_engine", "transaction", "utcnow"]
