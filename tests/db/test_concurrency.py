"""Real processes racing for one queue: nothing claimed twice, nothing lost, dead workers reaped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.models import Problem, Vote
from ttrl.db.queue import NewProblem

CLAIMER = Path(__file__).with_name("claimer.py")
N_PROBLEMS, PASSES = 10_000, 2


def spawn(url: str, worker: str, out: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CLAIMER), url, worker, str(out), mode])


def migrated(url: str) -> Engine:
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "n_workers"), [("postgres", 8), ("sqlite", 4)])
def test_workers_drain_queue_exactly_once_per_pass(
    kind: str, n_workers: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("fresh_pg_url" if kind == "postgres" else "fresh_sqlite_url")
    engine = migrated(url)
    with transaction(engine) as conn:
        queue.enqueue(conn, (NewProblem(f"p{i}", passes=PASSES) for i in range(N_PROBLEMS)))

    outs = [tmp_path / f"w{i}.txt" for i in range(n_workers)]
    procs = [spawn(url, f"w{i}", out, "drain") for i, out in enumerate(outs)]
    try:
        deadline = time.monotonic() + 120
        while not all(out.with_name(out.name + ".ready").exists() for out in outs):
            assert time.monotonic() < deadline, "a claimer never got ready"
            assert all(p.poll() is None for p in procs), "a claimer died before the start"
            time.sleep(0.05)
        (tmp_path / "go").touch()  # all start claiming together
        for p in procs:
            assert p.wait(timeout=240) == 0, "a claimer failed (a duplicate vote raises)"
    finally:
        for p in procs:  # none left waiting for the start (or holding the database)
            p.kill()
            p.wait()

    claims = Counter(line for out in outs for line in out.read_text().splitlines())
    assert len(claims) == N_PROBLEMS * PASSES, "some (problem, pass) was never claimed"
    assert max(claims.values()) == 1, f"claimed twice: {claims.most_common(3)}"
    workers_used = sum(1 for out in outs if out.read_text())
    assert workers_used >= 2, "the claimers did not actually run concurrently"
    with transaction(engine, write=False) as conn:
        assert conn.execute(select(func.count()).select_from(Vote)).scalar() == N_PROBLEMS * PASSES
        statuses = dict(
            conn.execute(select(Problem.status, func.count()).group_by(Problem.status)).all()
        )
        assert statuses == {"done": N_PROBLEMS}
        assert conn.execute(select(func.min(Problem.passes_done))).scalar() == PASSES
    engine.dispose()


def test_dead_workers_problems_are_reclaimed_after_lease(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(f"p{i}") for i in range(5)])
    out = tmp_path / "dead.txt"
    proc = spawn(db_url, "doomed", out, "die")
    deadline = time.monotonic() + 60
    while not (out.exists() and len(out.read_text().split()) == 5):
        assert time.monotonic() < deadline and proc.poll() is None, "worker never claimed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    claimed_by_dead = {int(x) for x in out.read_text().split()}

    with transaction(engine) as conn:
        assert queue.claim(conn, 5, "rescuer", 60) == []  # still leased to the dead worker
    time.sleep(1.2)  # its 1 s lease runs out; it never renewed
    with transaction(engine) as conn:
        assert queue.reap(conn, max_attempts=3) == 5
        rescued = queue.claim(conn, 5, "rescuer", 60)
    assert {c.id for c in rescued} == claimed_by_dead
    assert all(c.attempts == 2 for c in rescued)
    with transaction(engine) as conn:
        for c in rescued:
            assert queue.complete_pass(conn, c.id, "rescuer", "ok") == "done"
