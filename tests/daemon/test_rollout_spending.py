"""`ttrl serve` as a real process with the adaptive pass policy and the selective sample
buffer on: confident, stable answers are settled with passes left, `ttrl status` shows them,
and the versions record their replays within daemon.max_staleness; in process, an update
the guard rolls back leaves nothing in the buffer."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from serving import PLAIN_RL, TTRL, serve_until
from sqlalchemy import func, select
from toy_queue import enqueue_toy

from ttrl.config import load_settings
from ttrl.daemon.service import Service
from ttrl.db import make_engine, migrate, transaction
from ttrl.db.models import ModelVersion, Problem, Vote

PASSES = 40
SETTLE = {"policy": "adaptive", "settle_share": 0.8, "settle_after": 2}


def write_config(tmp_path: Path) -> Path:
    cfg = {
        # At 1.3 the tiny model is unanimous on some problems (they settle) and split on
        # others (their groups train, and are replayed).
        "engine": {"sampling": {"temperature": 1.3, "max_new_tokens": 64}},
        "rl": {**PLAIN_RL, "lr": 1e-5, "warmup_steps": 0},
        "queue": {"claim_batch": 4, "lease_s": 60},
        "guard": {"enabled": False},
        "daemon": {
            "votes": 6,
            "update_every_groups": 3,
            "poll_s": 0.2,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "grace_s": 60,
            "passes": SETTLE,
            # More informative groups wanted than an update's fresh ones: replays fill it.
            "replay": {"enabled": True, "fill_to": 6, "max_replays": 2},
        },
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_adaptive_passes_settle_and_the_buffer_replays(fresh_sqlite_url: str, tmp_path: Path):
    db = make_engine(fresh_sqlite_url)
    migrate.upgrade(db)
    enqueue_toy(db, seed=31, count=24, passes=PASSES, prefix="spend")
    env = {**os.environ, "TTRL_DB_URL": fresh_sqlite_url, "OMP_NUM_THREADS": "1"}

    def settled_and_replayed(_log: str) -> bool:
        with transaction(db, write=False) as conn:
            settled = conn.execute(select(func.count()).where(Problem.settled)).scalar_one()
            replays = conn.execute(select(ModelVersion.metrics)).scalars().all()
        return settled >= 3 and any(m["replayed_groups"] for m in replays)

    config = write_config(tmp_path)
    log = serve_until(config, env, tmp_path / "serve.log", settled_and_replayed, 400)
    assert "Traceback" not in log

    with transaction(db, write=False) as conn:
        problems = conn.execute(select(Problem.__table__)).all()
        votes = conn.execute(select(Vote.__table__).order_by(Vote.pass_index)).all()
        versions = conn.execute(select(ModelVersion.__table__)).all()
    settled = [p for p in problems if p.settled]
    assert len(settled) >= 3
    for p in problems:
        if p.status == "done":
            # Done with passes left only when settled; settled only when done.
            assert p.settled == (p.passes_done < p.passes_wanted), p
        else:
            assert not p.settled
    for p in settled:
        last = [v for v in votes if v.problem_id == p.id][-SETTLE["settle_after"] :]
        assert len(last) == SETTLE["settle_after"]
        assert len({v.label_key for v in last}) == 1 and last[0].label_key is not None
        assert all(v.share >= SETTLE["settle_share"] for v in last)
        assert p.answer == last[-1].label

    replayed = [v for v in versions if v.metrics["replayed_groups"]]
    assert replayed, "no version replayed a group"
    for v in replayed:
        assert 0 < v.metrics["replay_share"] <= 1
        # Rollouts of the served version or max_staleness (1) before it, trained into the
        # version after it.
        assert 1 <= v.metrics["replay_staleness"] <= 2

    status = subprocess.run(
        [TTRL, "status"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # rich draws the header's borders heavy (┃) and the rows' light (│).
    rows = [[c.strip() for c in re.split("[│┃]", line)] for line in status.splitlines()]
    names = next(r for r in rows if "settled" in r)
    cells = next(r for r in rows if len(r) > 1 and r[1] == "default")
    assert cells[names.index("settled")] == str(len(settled))
    db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("rolled_back", [False, True], ids=["kept", "rolled-back"])
def test_the_buffer_keeps_nothing_of_a_rolled_back_update(
    fresh_sqlite_url: str, tmp_path: Path, rolled_back: bool
) -> None:
    """In process: the first update's informative groups enter the buffer when its version
    serves, and none do when the guard rolls it back (a length ceiling it cannot pass)."""
    db = make_engine(fresh_sqlite_url)
    migrate.upgrade(db)
    enqueue_toy(db, seed=32, count=8, passes=PASSES, prefix="rb")
    settings = load_settings(
        db_url=fresh_sqlite_url,
        engine={"sampling": {"temperature": 1.3, "max_new_tokens": 48}},
        rl={**PLAIN_RL, "lr": 1e-5},
        queue={"claim_batch": 4},
        daemon={
            "votes": 6,
            "update_every_groups": 4,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "replay": {"enabled": True},
        },
        guard={
            "every_updates": 1,
            "probe_prompts": 4,
            "probe_samples": 2,
            "max_length_ratio": 0.01 if rolled_back else 100.0,
            "min_length_ratio": 0.01,
        },
    )
    svc = Service(settings)
    svc.load_models()
    try:
        for _ in range(40):
            svc.step()
            with transaction(db, write=False) as conn:
                first = conn.execute(select(ModelVersion.__table__)).first()
            if first is not None:
                break
    finally:
        svc.answerer.voter.shutdown()
        svc.db.dispose()
    assert first is not None, "no update trained in 40 rounds"
    assert first.status == ("rolled_back" if rolled_back else "active")
    assert first.metrics["replayed_groups"] == 0  # the buffer was empty
    assert svc.learner.replay is not None
    # n_groups counts the groups trained with spread; the buffer judges whole groups, which
    # are the trained ones here (6 votes, under rl.train_samples: nothing down-sampled).
    assert len(svc.learner.replay) == (0 if rolled_back else first.n_groups)
    if not rolled_back:
        assert first.n_groups > 0
    db.dispose()
