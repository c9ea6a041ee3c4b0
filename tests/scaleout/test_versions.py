"""How rollout workers hear of a new version: a PostgreSQL NOTIFY wakes them at once; on
SQLite (and whenever LISTEN is down) they poll."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from ttrl.daemon.versions import VersionWatch, announce
from ttrl.db import transaction
from ttrl.db.connection import is_postgres


def wait_due(watch: VersionWatch, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if watch.due():
            return True
        time.sleep(0.05)
    return False


def test_notify_wakes_the_watch_long_before_its_poll(engine: Engine) -> None:
    watch = VersionWatch(engine, poll_s=3600)
    try:
        assert watch.due()  # the first check is always due
        time.sleep(1.0)  # the listener connects (and asks for one check when it does)
        watch.due()
        assert not watch.due()
        with transaction(engine) as conn:
            announce(conn, 7)
            time.sleep(0.5)
            assert not watch.due()  # nothing before the commit: the row comes first
        assert wait_due(watch, 5.0) == is_postgres(engine)  # SQLite waits for its poll
    finally:
        watch.stop()


def test_polling_alone_checks_every_poll_s(engine: Engine) -> None:
    watch = VersionWatch(engine, poll_s=0.3)
    try:
        assert watch.due()
        time.sleep(1.0)
        assert watch.due()  # 0.3 s passed (or the listener connected)
        assert not watch.due()
        assert wait_due(watch, 2.0)
    finally:
        watch.stop()
