"""Every queue transition, on real SQLite and real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, Row, select

from ttrl.db import queue, transaction, utcnow
from ttrl.db.models import Problem
from ttrl.db.queue import LeaseLost, NewProblem


def add(engine: Engine, *problems: NewProblem) -> list[int]:
    with transaction(engine) as conn:
        queue.enqueue(conn, problems)
        return list(conn.execute(select(Problem.id).order_by(Problem.id)).scalars())


def row(engine: Engine, pid: int) -> Row[Any]:
    with transaction(engine, write=False) as conn:
        return conn.execute(select(Problem.__table__).where(Problem.id == pid)).one()


def claim(engine: Engine, k: int, worker: str = "w1", lease_s: float = 60, now=None):
    with transaction(engine) as conn:
        return queue.claim(conn, k, worker, lease_s, now=now)


def test_claim_order_is_priority_then_fifo(engine: Engine) -> None:
    add(
        engine,
        NewProblem("low-1"),
        NewProblem("high-1", priority=5),
        NewProblem("low-2"),
        NewProblem("high-2", priority=5),
        NewProblem("urgent", priority=9),
    )
    got = [p.prompt for p in claim(engine, 3)]
    assert got == ["urgent", "high-1", "high-2"]
    assert [p.prompt for p in claim(engine, 10)] == ["low-1", "low-2"]
    assert claim(engine, 10) == []


def test_claim_sets_lease_and_counts_attempt(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p", meta={"topic": "algebra"}))
    now = utcnow()
    (c,) = claim(engine, 1, "w1", lease_s=30, now=now)
    assert c.id == pid and c.attempts == 1 and c.meta == {"topic": "algebra"}
    assert c.lease_until == now + timedelta(seconds=30)
    r = row(engine, pid)
    assert (r.status, r.claimed_by) == ("claimed", "w1")


def test_enqueue_is_idempotent_by_external_id(engine: Engine) -> None:
    with transaction(engine) as conn:
        first = queue.enqueue(conn, [NewProblem("a", external_id="x"), NewProblem("b")])
        again = queue.enqueue(conn, [NewProblem("a2", external_id="x"), NewProblem("c")])
    assert first.inserted == 2 and first.already_present == []
    assert again.inserted == 1 and again.already_present == ["x"]
    with transaction(engine, write=False) as conn:
        prompts = conn.execute(select(Problem.prompt).order_by(Problem.id)).scalars().all()
    assert prompts == ["a", "b", "c"]  # the first version of "x" is kept


def test_passes_requeue_until_done_and_answer_is_newest(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p", passes=2))
    (c,) = claim(engine, 1)
    with transaction(engine) as conn:
        assert queue.complete_pass(conn, c.id, "w1", "41", 0.5, 0) == "queued"
    r = row(engine, pid)
    assert (r.passes_done, r.attempts, r.answer, r.claimed_by) == (1, 0, "41", None)
    (c,) = claim(engine, 1, "w2")
    assert c.passes_done == 1
    with transaction(engine) as conn:
        assert queue.complete_pass(conn, c.id, "w2", "42", 0.75, 1) == "done"
    r = row(engine, pid)
    assert (r.status, r.passes_done, r.answer, r.answer_share, r.answer_version) == (
        "done",
        2,
        "42",
        0.75,
        1,
    )
    assert claim(engine, 1) == []


def test_transitions_need_the_lease(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p"))
    claim(engine, 1, "owner")
    with transaction(engine) as conn, pytest.raises(LeaseLost, match="not claimed by worker"):
        queue.complete_pass(conn, pid, "intruder", "1")
    with transaction(engine) as conn, pytest.raises(LeaseLost):
        queue.fail(conn, pid, "intruder", "boom", max_attempts=3)
    with transaction(engine) as conn:
        assert queue.renew(conn, [pid], "intruder", 60) == set()
    assert row(engine, pid).claimed_by == "owner"


def test_fail_retries_then_fails_after_max_attempts(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p"))
    for attempt in (1, 2):
        (c,) = claim(engine, 1)
        assert c.attempts == attempt
        with transaction(engine) as conn:
            assert queue.fail(conn, pid, "w1", f"oom {attempt}", max_attempts=3) == "queued"
    claim(engine, 1)
    with transaction(engine) as conn:
        assert queue.fail(conn, pid, "w1", "oom 3", max_attempts=3) == "failed"
    r = row(engine, pid)
    assert (r.status, r.last_error, r.attempts) == ("failed", "oom 3", 3)
    assert claim(engine, 1) == []
    with transaction(engine) as conn:
        assert queue.requeue_failed(conn) == 1
    assert claim(engine, 1)[0].attempts == 1


def test_reap_returns_expired_leases_only(engine: Engine) -> None:
    a, b = add(engine, NewProblem("a"), NewProblem("b"))
    now = utcnow()
    claim(engine, 1, "dead", lease_s=10, now=now)
    claim(engine, 1, "alive", lease_s=100, now=now)
    with transaction(engine) as conn:
        assert queue.reap(conn, max_attempts=3, now=now + timedelta(seconds=5)) == 0
        assert queue.reap(conn, max_attempts=3, now=now + timedelta(seconds=11)) == 1
    assert (row(engine, a).status, row(engine, a).last_error) == ("queued", "lease expired")
    assert row(engine, b).status == "claimed"
    with transaction(engine) as conn, pytest.raises(LeaseLost):
        queue.complete_pass(conn, a, "dead", "1")


def test_reap_fails_after_max_attempts(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p"))
    now = utcnow()
    for _ in range(2):
        claim(engine, 1, "w", lease_s=1, now=now)
        with transaction(engine) as conn:
            queue.reap(conn, max_attempts=2, now=now + timedelta(seconds=2))
    assert row(engine, pid).status == "failed"


def test_renew_extends_only_held_leases(engine: Engine) -> None:
    a, b = add(engine, NewProblem("a"), NewProblem("b"))
    now = utcnow()
    claim(engine, 2, "w1", lease_s=10, now=now)
    with transaction(engine) as conn:
        queue.reap(conn, 3, now=now - timedelta(seconds=1))  # nothing expired yet
        assert queue.renew(conn, [a, b, 999], "w1", lease_s=100) == {a, b}
        assert queue.reap(conn, 3, now=now + timedelta(seconds=50)) == 0


def test_release_gives_back_without_counting_the_attempt(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p"))
    claim(engine, 1, "w1")
    with transaction(engine) as conn:
        assert queue.release(conn, [pid], "w1") == 1
    r = row(engine, pid)
    assert (r.status, r.attempts, r.claimed_by) == ("queued", 0, None)


def test_depth_counts_by_batch_and_status(engine: Engine) -> None:
    add(engine, NewProblem("a", batch="b1"), NewProblem("b", batch="b1"), NewProblem("c"))
    claim(engine, 1)
    with transaction(engine, write=False) as conn:
        assert queue.depth(conn) == [
            ("b1", "claimed", 1),
            ("b1", "queued", 1),
            ("default", "queued", 1),
        ]


def test_claim_rejects_nonpositive_k(engine: Engine) -> None:
    with transaction(engine) as conn, pytest.raises(ValueError, match="k must be >= 1"):
        queue.claim(conn, 0, "w", 10)


def test_plain_sql_insert_needs_only_a_prompt(engine: Engine) -> None:
    from sqlalchemy import text

    with transaction(engine) as conn:
        conn.execute(text("INSERT INTO problems (prompt) VALUES ('from a dashboard')"))
    (c,) = claim(engine, 1)
    assert (c.prompt, c.batch, c.passes_wanted, c.priority) == ("from a dashboard", "default", 1, 0)
    created = row(engine, c.id).created_at
    assert abs((created - utcnow()).total_seconds()) < 120, "server default must be UTC"


def test_next_pass_goes_to_the_back_of_the_queue(engine: Engine) -> None:
    a, b, c = add(engine, NewProblem("a", passes=3), NewProblem("b", passes=3), NewProblem("c"))
    (first,) = claim(engine, 1)
    assert first.id == a
    with transaction(engine) as conn:
        queue.complete_pass(conn, a, "w1", "x")
    assert [claim(engine, 1)[0].id for _ in range(3)] == [b, c, a]


def test_settle_ends_the_passes_early_and_requeue_unsettles(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p", passes=5))
    claim(engine, 1)
    with transaction(engine) as conn:
        assert queue.complete_pass(conn, pid, "w1", "7", 1.0, 0, settle=True) == "done"
    r = row(engine, pid)
    assert (r.status, r.passes_done, r.passes_wanted, r.settled) == ("done", 1, 5, True)
    assert claim(engine, 1) == []
    with transaction(engine) as conn:
        assert queue.requeue(conn, "done") == 1
    r = row(engine, pid)
    assert (r.status, r.passes_wanted, r.settled) == ("queued", 2, False)


def test_complete_pass_can_raise_the_passes_wanted(engine: Engine) -> None:
    (pid,) = add(engine, NewProblem("p"))
    claim(engine, 1)
    with transaction(engine) as conn:
        assert queue.complete_pass(conn, pid, "w1", "7", 0.3, 0, passes_wanted=2) == "queued"
    (c,) = claim(engine, 1)
    assert (c.passes_done, c.passes_wanted) == (1, 2)
    with transaction(engine) as conn:
        assert queue.complete_pass(conn, pid, "w1", "7", 0.9, 1) == "done"
    assert not row(engine, pid).settled


def test_fixed_passes_is_stored_and_claimed(engine: Engine) -> None:
    add(engine, NewProblem("a", fixed_passes=True), NewProblem("b"))
    assert [c.fixed_passes for c in claim(engine, 2)] == [True, False]


def test_fixed_passes_must_be_a_boolean(engine: Engine) -> None:
    with transaction(engine) as conn, pytest.raises(queue.InvalidProblem, match="fixed_passes"):
        queue.enqueue(conn, [NewProblem("a", fixed_passes=1)])  # type: ignore[arg-type]
