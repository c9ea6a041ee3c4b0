"""The pass policy's decisions on hand-made vote histories."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert, select

from ttrl.daemon import store
from ttrl.daemon.config import PassesConfig
from ttrl.daemon.passes import KEEP, PassDecision, PassVote, decide, is_stable
from ttrl.db import queue, transaction, utcnow
from ttrl.db.models import Problem, Vote
from ttrl.db.queue import NewProblem

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
        history = store.recent_votes(conn, [a, b], 2)
        assert store.recent_votes(conn, [a], 0) == {}
    assert history == {
        a: [PassVote("k2", 0.2), PassVote("k3", 0.3)],
        b: [PassVote(None, 0.5)],
    }
