"""``daemon.vote_window``: a vote pools the answers of the problem's previous passes, read
back from the rollouts table (SQLite and PostgreSQL), through the daemon's own claim path
with the real tiny model."""

from __future__ import annotations

import pytest
from daemon_parts import answerer
from sqlalchemy import Engine, insert, select

from ttrl.answers import pooled_vote
from ttrl.config import load_settings
from ttrl.daemon import votes as vote_store
from ttrl.daemon.records import RolloutRecord, VoteRecord
from ttrl.db import queue, transaction, utcnow
from ttrl.db.models import ModelVersion, Rollout, Vote
from ttrl.db.queue import NewProblem
from ttrl.engines import load_engine

HARD = "What is 47 + 8 * 7 + 91?"  # level 4: the tiny model's answers spread


@pytest.fixture(scope="module")
def tiny_engine():
    return load_engine(load_settings().engine)


def _record(
    problem_id: int, pass_index: int, answers: list[str | None], version: int = 0
) -> VoteRecord:
    """A vote of ``version`` whose rollouts gave ``answers``: only the answers matter here."""
    rollouts = [RolloutRecord("t", [1], [2], "stop", a, a, 0.0) for a in answers]
    return VoteRecord(problem_id, pass_index, version, None, None, 0.0, 1, False, None, rollouts)


def test_recent_answers_reads_the_rollouts_of_the_newest_passes(engine: Engine) -> None:
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(p, passes=9) for p in "abc"])
        a, b, c = (p.id for p in queue.claim(conn, 3, "w", 60))
        for i, answers in enumerate([["1", "1"], ["2", None], ["3", "3"]]):
            vote_store.record_vote(conn, _record(a, i, answers), "w")
        vote_store.record_vote(conn, _record(b, 0, ["5"]), "w")
        # Version 2 was refused by the guard: its answers do not vote again.
        for version, status in [(1, "active"), (2, "rolled_back")]:
            conn.execute(
                insert(ModelVersion).values(version=version, status=status, created_at=utcnow())
            )
        vote_store.record_vote(conn, _record(c, 0, ["6"], version=1), "w")
        vote_store.record_vote(conn, _record(c, 1, ["8", "8"], version=2), "w")
        got = vote_store.recent_answers(conn, [a, b, c], 2)
        assert vote_store.recent_answers(conn, [a], 0) == {}
    assert got == {a: ["3", "3", "2", None], b: ["5"], c: ["6"]}  # newest pass first


def test_a_vote_pools_the_previous_passes_answers(engine: Engine, tiny_engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(HARD, passes=3)])
    for seed in (5, 6, 7):  # a worker per pass, each with its own dice
        svc = answerer(
            url,
            tiny_engine,
            daemon={"votes": 8, "vote_window": 2},
            engine={"sampling": {"seed": seed}},
        )
        try:
            assert svc.claim_and_answer()
            svc.flush()
        finally:
            svc.voter.shutdown()
            svc.db.dispose()
    with transaction(engine, write=False) as conn:
        shares = conn.execute(select(Vote.share).order_by(Vote.pass_index)).scalars().all()
        rows = conn.execute(
            select(Rollout.vote_id, Rollout.raw_answer, Rollout.reward).order_by(Rollout.id)
        ).all()
    passes: dict[int, list] = {}
    for vote_id, answer, reward in rows:
        passes.setdefault(vote_id, []).append((answer, reward))
    first, second, third = ([a for a, _ in p] for p in passes.values())
    expected = [pooled_vote(first, []), pooled_vote(second, first), pooled_vote(third, second)]
    assert shares == [v.share for v in expected]  # the window is 2: pass 3 leaves pass 1 out
    assert [[r for _, r in p] for p in passes.values()] == [v.rewards for v in expected]
    # The pooled shares differ from the passes' own: the test sees the wiring.
    assert shares != [pooled_vote(p, []).share for p in (first, second, third)]
