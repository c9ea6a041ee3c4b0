"""How rollout workers learn that the learner published (or rolled back) a model version,
and follow it.

The learner commits the version row and, on PostgreSQL, ``NOTIFY ttrl_versions`` in the
same transaction (delivered at commit, so a listener never sees a version before its
row). A rollout worker LISTENs on a dedicated connection and also polls every
``daemon.version_poll_s`` seconds: polling is the whole mechanism on SQLite, and the
fallback whenever the listening connection is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from ttrl.daemon import model_versions
from ttrl.daemon.serving import Serving
from ttrl.db import transaction
from ttrl.db.config import DatabaseConfig
from ttrl.db.connection import is_postgres, pg_connect_args

CHANNEL = "ttrl_versions"


def announce(conn: Connection, version: int) -> None:
    """Tell listening workers, at commit of ``conn``'s transaction, that the active version
    changed (a no-op on SQLite, whose workers poll)."""
    if is_postgres(conn):
        conn.execute(
            text("SELECT pg_notify(:channel, :v)"), {"channel": CHANNEL, "v": str(version)}
        )


class VersionWatch:
    """``due()`` is True when a notification arrived or ``poll_s`` passed since the last
    check; a background thread keeps a LISTEN connection open on PostgreSQL."""

    def __init__(self, db: Engine, poll_s: float, timeouts: DatabaseConfig | None = None) -> None:
        self.poll_s = poll_s
        # The listening connection gets the same connect timeout and keepalives as the pool.
        self.connect_args = pg_connect_args(db.url, timeouts or DatabaseConfig())
        self.notified = threading.Event()
        self.stopped = threading.Event()
        self.checked = float("-inf")
        if is_postgres(db):
            conninfo = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            threading.Thread(target=self._listen, args=(conninfo,), daemon=True).start()

    def due(self) -> bool:
        now = time.monotonic()
        if self.notified.is_set() or now - self.checked >= self.poll_s:
            self.notified.clear()
            self.checked = now
            return True
        return False

    def stop(self) -> None:
        self.stopped.set()

    def _listen(self, conninfo: str) -> None:
        import psycopg

        while not self.stopped.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, **self.connect_args) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.notified.set()  # (re)connected: whatever was missed, check now
                    while not self.stopped.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.notified.set()
            except psycopg.Error as exc:
                logger.warning("LISTEN {} lost ({}); polling until it is back", CHANNEL, exc)
                self.stopped.wait(self.poll_s)


class Follower:
    """A rollout worker serves the learner's active version: newer, or older after a
    rollback. Files not readable yet (a lagging shared filesystem) are retried later."""

    def __init__(
        self,
        db: Engine,
        watch: VersionWatch,
        serving: Serving,
        base: Path,
        changed: Callable[[], None],
    ) -> None:
        self.db = db
        self.watch = watch
        self.serving = serving
        self.base = base
        self.changed = changed  # told after a new version serves

    def follow(self) -> None:
        """Load the active version when the watch says to check and it changed."""
        if not self.watch.due():
            return
        engine = self.serving.engine
        assert engine is not None
        with transaction(self.db, write=False) as conn:
            newest = model_versions.newest_active_version(conn)
        version, path = newest if newest else (0, None)
        if version == self.serving.version:
            return
        model_dir = Path(path) if path else self.base
        try:
            # load_checkpoint checks every tensor (names, shapes, NaN/inf) before serving it.
            engine.load_checkpoint(model_dir, version)
        except (OSError, ValueError, RuntimeError) as exc:
            logger.warning("cannot load version {} from {} yet ({}); retrying", version, path, exc)
            return
        self.serving.now(version)
        self.changed()
