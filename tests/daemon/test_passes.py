"""The pass policy's decisions on hand-made vote histories, and their wiring in the daemon."""

from __future__ import annotations

import pytest
from daemon_parts import answerer
from sqlalchemy import Engine, insert, select

from ttrl.config.daemon import PassesConfig
from ttrl.daemon import votes as vote_store
from ttrl.daemon.answering import Answerer
from ttrl.daemon.passes import KEEP, PassDecision, PassVote, decide, is_stable
from ttrl.daemon.voting import tally
from ttrl.db import queue, transaction, utcnow
from ttrl.db.models import Problem, Vote
from ttrl.db.queue import NewProblem
from ttrl.engines.base import Completion

ADAPTIVE = PassesConfig(policy="adaptive", settle_share=0.9, settle_after=2, max_passes=4)


def votes(*pairs: tuple[str | None, float]) -> list[PassVote]:
    return [PassVote(key, share) for key, share in pairs]


def test_fixed_policy_and_fixed_problems_keep_their_passes() -> None:
    unanimous = votes(("7", 1.0), ("7", 1.0))
    assert decide(unanimous, 2, 10, False, PassesConfig()) == KEEP
    assert decide(unanimous, 2, 10, True, ADAPTIVE) == KEEP  # the problem's fixed_passes
    assert decide(votes(("7", 0.2)), 1, 1, True, ADAPTIVE) == KEEP  # no extra pass either


def test_two_confident_passes_on_one_answer_settle() -> None:
    assert decide(votes(("7", 0.95), ("7", 0.9)), 2, 10, False, ADAPTIVE) == PassDecision(
        settle=True
    )


@pytest.mark.parametrize(
    ("history", "why"),
    [
        ([("7", 1.0)], "one pass is not a stable answer"),
        ([("7", 1.0), ("8", 1.0)], "the answer changed between passes"),
        ([("7", 0.85), ("7", 1.0)], "an earlier pass was not confident"),
        ([("7", 1.0), ("7", 0.85)], "the newest pass is not confident"),
        ([(None, 1.0), (None, 1.0)], "no answer is never settled"),
    ],
)
def test_unstable_or_unconfident_answers_do_not_settle(history: list, why: str) -> None:
    recent = votes(*history)
    assert not is_stable(recent, ADAPTIVE), why
    assert decide(recent, len(recent), 10, False, ADAPTIVE) == KEEP, why


def test_only_the_newest_passes_count() -> None:
    recent = votes(("3", 0.4), ("8", 0.6), ("7", 0.9), ("7", 1.0))
    assert decide(recent, 4, 10, False, ADAPTIVE).settle
    assert not decide(recent, 4, 10, False, ADAPTIVE.model_copy(update={"settle_after": 3})).settle


def test_settle_after_one_pass_when_configured() -> None:
    cfg = ADAPTIVE.model_copy(update={"settle_after": 1})
    assert decide(votes(("7", 0.9)), 1, 5, False, cfg).settle


def test_a_problem_with_no_passes_left_is_done_not_settled() -> None:
    assert decide(votes(("7", 1.0), ("7", 1.0)), 2, 2, False, ADAPTIVE) == KEEP


def test_a_split_vote_gets_more_passes_up_to_the_cap() -> None:
    split = ("7", 0.3)
    assert decide(votes(split), 1, 1, False, ADAPTIVE) == PassDecision(passes_wanted=2)
    assert decide(votes(split, split), 2, 2, False, ADAPTIVE) == PassDecision(passes_wanted=3)
    assert decide(votes(split, split, split), 3, 3, False, ADAPTIVE).passes_wanted == 4
    assert decide(votes(split, split, split, split), 4, 4, False, ADAPTIVE) == KEEP  # the cap


def test_a_split_vote_with_passes_left_keeps_them() -> None:
    assert decide(votes(("7", 0.3)), 1, 3, False, ADAPTIVE) == KEEP


def test_a_middling_vote_gets_no_extra_pass() -> None:
    assert decide(votes(("7", 0.6)), 1, 1, False, ADAPTIVE) == KEEP  # split_share 0.5


def test_the_cap_never_lowers_what_the_user_asked_for() -> None:
    split = ("7", 0.3)
    assert decide(votes(split), 5, 6, False, ADAPTIVE) == KEEP  # 6 > max_passes: kept
    assert decide(votes(split), 6, 6, False, ADAPTIVE) == KEEP  # spent: done, no extra


def test_recent_votes_reads_the_newest_passes_of_each_problem(engine: Engine) -> None:
    """The policy's history query (a window function), on SQLite and PostgreSQL."""
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem("a", passes=9), NewProblem("b", passes=9)])
        a, b = conn.execute(select(Problem.id).order_by(Problem.id)).scalars()
        now = utcnow()
        rows = [(a, i, f"k{i}", i / 10) for i in range(4)] + [(b, 0, None, 0.5)]
        conn.execute(
            insert(Vote),
            [
                {
                    "problem_id": p,
                    "pass_index": i,
                    "model_version": 0,
                    "n": 4,
                    "label_key": k,
                    "share": share,
                    "n_distinct": 1,
                    "tie": False,
                    "created_at": now,
                }
                for p, i, k, share in rows
            ],
        )
        history = vote_store.recent_votes(conn, [a, b], 2)
        assert vote_store.recent_votes(conn, [a], 0) == {}
    assert history == {
        a: [PassVote("k2", 0.2), PassVote("k3", 0.3)],
        b: [PassVote(None, 0.5)],
    }


def _pass(svc: Answerer, engine: Engine, answers: list[str]) -> list[bool]:
    """Claim every queued problem, give each completions with ``answers``, write the votes
    through the daemon's own path; returns whether each write settled its problem."""
    with transaction(engine) as conn:
        claimed = queue.claim(conn, 100, svc.worker_id, 60)
    sampled = [
        (c, [Completion(f"so \\boxed{{{a}}}", [1], [2, 3], "stop", 0) for a in answers])
        for c in claimed
    ]
    tallies = [tally(samples) for _, samples in sampled]
    with transaction(engine) as conn:
        return [settled for _, settled in svc.write_votes(conn, sampled, tallies)]


def test_the_daemon_settles_with_the_history_it_stored(engine: Engine) -> None:
    """The wiring in Answerer.write_votes: the pass just voted counts (+1), the history
    read back has settle_after - 1 earlier passes, and fixed_passes problems and canaries
    keep their passes."""
    url = engine.url.render_as_string(hide_password=False)
    svc = answerer(url, None, daemon={"passes": {"policy": "adaptive", "settle_after": 3}})
    with transaction(engine) as conn:
        queue.enqueue(
            conn,
            [
                NewProblem("free", passes=9),
                NewProblem("fixed", passes=9, fixed_passes=True),
                NewProblem("canary", passes=9, batch="canary"),
            ],
        )
    try:
        assert _pass(svc, engine, ["7"] * 4) == [False] * 3
        assert _pass(svc, engine, ["7"] * 4) == [False] * 3  # two confident passes of three
        assert _pass(svc, engine, ["7"] * 4) == [True, False, False]
        with transaction(engine, write=False) as conn:
            rows = conn.execute(
                select(
                    Problem.prompt, Problem.status, Problem.settled, Problem.passes_done
                ).order_by(Problem.id)
            ).all()
        assert [tuple(r) for r in rows] == [
            ("free", "done", True, 3),
            ("fixed", "queued", False, 3),
            ("canary", "queued", False, 3),
        ]
    finally:
        svc.voter.shutdown()
        svc.db.dispose()


def test_split_share_above_settle_share_is_refused() -> None:
    with pytest.raises(ValueError, match="split_share"):
        PassesConfig(policy="adaptive", settle_share=0.6, split_share=0.7)
