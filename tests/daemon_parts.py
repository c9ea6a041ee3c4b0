"""The daemon's parts built alone, as the service wires them, for tests that drive one."""

from __future__ import annotations

from typing import Any

from ttrl.config import load_settings
from ttrl.daemon.answering import Answerer
from ttrl.daemon.health import Progress
from ttrl.daemon.outages import Outages
from ttrl.db import make_engine
from ttrl.engines import Engine


def answerer(db_url: str, sampler: Engine | Any, /, **settings: Any) -> Answerer:
    """The answering pipeline of a daemon with ``settings`` on ``db_url``, sampling with
    ``sampler`` (a real engine, or a stand-in that fails on purpose)."""
    cfg, progress = load_settings(db_url=db_url, **settings), Progress()
    db = make_engine(cfg.db_url, cfg.database)
    return Answerer(cfg, db, "test-worker", sampler, Outages(db, 60, progress), progress)
