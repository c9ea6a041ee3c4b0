"""The scheduled jobs of a daemon, on APScheduler threads beside the main loop: lease
renewal, reaping expired leases, the heartbeat, retention, and the timers that raise the
update and guard checks (the main loop runs those: they share the device)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger
from sqlalchemy import Engine as SqlEngine

from ttrl.daemon import metrics, votes
from ttrl.daemon.outages import Outages
from ttrl.db import queue, transaction, utcnow

Job = Callable[[], None]


class _NoSkippedRuns(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


def reap(db: SqlEngine, max_attempts: int) -> None:
    """Requeue (or fail) the problems whose lease expired."""
    with transaction(db) as conn:
        n = queue.reap(conn, max_attempts)
    metrics.LEASES_REAPED.inc(n)
    if n:
        logger.info("reaped {} expired leases", n)


def retention(db: SqlEngine, days: float, min_trainable: int) -> None:
    """Drop the texts of consumed rollouts older than ``days``."""
    with transaction(db) as conn:
        n = votes.prune_rollout_texts(conn, utcnow() - timedelta(days=days), min_trainable)
    if n:
        logger.info("pruned the texts of {} trained rollouts", n)


class Jobs:
    """The scheduler and its jobs; a job that needs the database skips its runs during an
    outage (:meth:`Outages.job`)."""

    def __init__(self) -> None:
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.update_every_s: float | None = None

    def start(
        self,
        outages: Outages,
        db_jobs: dict[str, tuple[Job, float]],
        timers: dict[str, tuple[threading.Event, float]],
        watchdog: tuple[Job, float] | None,
    ) -> None:
        """Run each of ``db_jobs`` (name: job, seconds) through outages, set each event of
        ``timers`` (name: event, seconds) on its interval, and feed the watchdog."""
        # A job still waiting on a hung database when its next run is due is skipped: said
        # once by the outage lines, not by APScheduler every second.
        logging.getLogger("apscheduler.scheduler").addFilter(_NoSkippedRuns())
        # A busy CPU delays jobs; APScheduler would drop a run over 1 s late by default.
        late = {"misfire_grace_time": None, "coalesce": True}
        add = self.scheduler.add_job
        for name, (job, seconds) in db_jobs.items():
            add(outages.job(name, job), "interval", seconds=seconds, id=name, **late)
        for name, (event, seconds) in timers.items():
            add(event.set, "interval", seconds=seconds, id=name, **late)
        if watchdog is not None:
            add(watchdog[0], "interval", seconds=watchdog[1], id="watchdog", **late)
        self.update_every_s = timers["update"][1] if "update" in timers else None
        self.scheduler.start()

    def restart_update_timer(self) -> None:
        """The update timer counts from the update just started."""
        if self.update_every_s is not None:
            self.scheduler.reschedule_job("update", trigger="interval", seconds=self.update_every_s)

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
