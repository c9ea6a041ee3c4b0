"""Database outages alone: the backoff, the watchdog kept fed, the jobs skipped."""

from __future__ import annotations

import time

from sqlalchemy.exc import OperationalError

from ttrl.daemon.health import Progress
from ttrl.daemon.outages import Outages
from ttrl.db import make_engine


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_the_backoff_grows_with_the_outage_and_ends_with_it(tmp_path) -> None:
    progress = Progress()
    outages = Outages(make_engine(f"sqlite:///{tmp_path / 'x.db'}"), 60, progress)
    progress.at -= 100  # a loop that last stepped long ago
    assert outages.down(refused(), "claiming") == 1.0  # the first try: 1 s
    assert progress.stalled_s() < 1  # retrying is progress: the watchdog is fed
    began = time.monotonic() - 40  # a call that hung 40 s before it failed
    outages.since = None
    assert 20.0 < outages.down(refused(), "claiming", began) <= 21.1  # 1 + 40 / 2
    outages.since = time.monotonic() - 500  # down for minutes
    assert outages.down(refused(), "writing the votes") == 30.0  # at most 30 s
    outages.back()
    assert outages.since is None


def test_a_job_is_skipped_during_an_outage_and_survives_one(tmp_path) -> None:
    outages = Outages(make_engine(f"sqlite:///{tmp_path / 'x.db'}"), 60, Progress())
    runs: list[str] = []

    def failing() -> None:
        runs.append("ran")
        raise refused()

    job = outages.job("reap", failing)
    job()  # the database failed the job: logged, not raised
    outages.since = time.monotonic()
    job()  # during an outage the main loop retries; the job does not run
    assert runs == ["ran"]
