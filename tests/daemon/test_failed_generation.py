"""A prompt the engine cannot sample is failed in the queue alone; when its lease was lost
meanwhile (another worker took the problem over), the failure is left to the new owner and the
service goes on instead of stopping."""

from __future__ import annotations

import time

import pytest
from daemon_parts import answerer
from sqlalchemy import Engine, select

from ttrl.config import load_settings
from ttrl.db import queue, transaction
from ttrl.db.models import Problem
from ttrl.db.queue import NewProblem
from ttrl.engines import load_engine

TOO_LONG = "What is " + "1 + " * 300 + "1?"  # longer than the tiny model's context


@pytest.fixture(scope="module")
def tiny_engine():
    return load_engine(load_settings().engine)


def claimed_service(engine: Engine, db_url: str, tiny_engine, lease_s: float):
    svc = answerer(db_url, tiny_engine)
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(TOO_LONG), NewProblem("What is 2 + 3?")])
        claimed = queue.claim(conn, 2, svc.worker_id, lease_s)
    svc.in_flight = [c.id for c in claimed]
    return svc, claimed


def problem(engine: Engine, problem_id: int):
    with transaction(engine, write=False) as conn:
        return conn.execute(select(Problem.__table__).where(Problem.id == problem_id)).one()


def test_the_bad_prompt_fails_alone(engine: Engine, db_url: str, tiny_engine) -> None:
    svc, claimed = claimed_service(engine, db_url, tiny_engine, lease_s=60)
    sampled = svc.generate(claimed)
    bad, good = claimed
    assert [c.id for c, _ in sampled] == [good.id]
    assert svc.in_flight == [good.id]
    row = problem(engine, bad.id)
    assert row.status == "queued" and row.claimed_by is None  # retried up to max_attempts
    assert "generation failed" in row.last_error and "shorten the prompt" in row.last_error
    svc.db.dispose()


def test_a_lost_lease_leaves_the_failure_to_the_new_owner(
    engine: Engine, db_url: str, tiny_engine
) -> None:
    svc, claimed = claimed_service(engine, db_url, tiny_engine, lease_s=0.5)
    time.sleep(0.6)
    with transaction(engine) as conn:
        assert queue.reap(conn, max_attempts=3) == 2
        taken = queue.claim(conn, 2, "rescuer", 60)
    assert len(taken) == 2

    sampled = svc.generate(claimed)  # raised LeaseLost out of the service before the fix

    assert [c.id for c, _ in sampled] == [claimed[1].id]
    assert svc.in_flight == [claimed[1].id]  # its vote will be dropped at the write
    row = problem(engine, claimed[0].id)
    assert row.claimed_by == "rescuer" and row.last_error == "lease expired"  # the reap's, not ours
    svc.db.dispose()
