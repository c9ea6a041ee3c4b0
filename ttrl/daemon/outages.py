"""Database outages: the daemon keeps its process and its work in memory, and retries.

:class:`Outages` is the one place that knows whether the database is down and since when:
the main loop asks it for the backoff, writes go through :meth:`Outages.store` (retried
until the database is back), scheduled jobs through :meth:`Outages.job` (skipped during
an outage, which the main loop reports)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from loguru import logger
from sqlalchemy import Connection
from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import OperationalError

from ttrl.daemon import metrics
from ttrl.daemon.health import Progress, sd_notify
from ttrl.db import transaction

T = TypeVar("T")


class Outages:
    """The outage state of one database; ``progress`` is fed while retrying (alive, not
    stalled)."""

    def __init__(self, db: SqlEngine, alert_s: float, progress: Progress) -> None:
        self.db = db
        self.alert_s = alert_s
        self.progress = progress
        self.since: float | None = None  # monotonic time the database went away

    def store(self, what: str, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in one transaction, retrying through database outages with backoff
        for as long as it takes: the work in memory is written when the database returns.
        Stopping does not drop the work: the grace timer bounds the wait."""
        while True:
            began = time.monotonic()
            try:
                with transaction(self.db) as conn:
                    result = write(conn)
                self.back()
                return result
            except OperationalError as exc:
                wait = self.down(exc, f"writing {what}", began)
            time.sleep(wait)

    def down(self, exc: OperationalError, doing: str, began: float | None = None) -> float:
        """Log the outage (an error once it is older than ``daemon.outage_alert_s``), keep the
        watchdog fed (the process is alive and retrying), return the backoff in seconds. The
        outage counts from ``began``, when the failing call started: a connection that hung
        until it was cut or timed out was down all that time, like a refused one."""
        now = time.monotonic()
        if self.since is None:
            self.since = min(now, began) if began is not None else now
        down = now - self.since
        wait = min(30.0, 1.0 + down / 2)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if down >= self.alert_s:
            status = f"DATABASE UNREACHABLE for {down / 60:.1f} min ({reason}); retrying"
            logger.error("{} while {}", status, doing)
        else:
            status = f"database unavailable for {down:.0f}s ({reason}); retrying"
            logger.warning("{} while {}; next try in {:.0f}s", status, doing, wait)
        metrics.DB_OUTAGE_SECONDS.set(down)
        metrics.DB_ERRORS.inc()
        self.progress.touch()  # alive and retrying: not a stall
        sd_notify(status=status)
        return wait

    def back(self) -> None:
        """The database answered: end the outage, if there was one."""
        if self.since is not None:
            logger.info("database back after {:.0f}s", time.monotonic() - self.since)
            metrics.DB_OUTAGE_SECONDS.set(0)
            self.since = None

    def job(self, name: str, job: Callable[[], None]) -> Callable[[], None]:
        """The scheduled job ``name`` that needs the database skips its run during an
        outage, quietly: the main loop reports the outage (one clear line per retry, not a
        traceback per job)."""

        def run() -> None:
            if self.since is not None:
                return  # the main loop retries; a job would only wait on the same outage
            try:
                job()
            except OperationalError as exc:
                if "statement timeout" in str(exc.orig):  # the server is up: say it
                    logger.warning(
                        "{} ran past database.statement_timeout_s and was cancelled: {}",
                        name,
                        str(exc.orig).strip().splitlines()[0],
                    )
                    return
                logger.debug("{} skipped: database unavailable ({})", name, exc.orig)

        return run
