"""pass@1, maj@k and reward accuracy of a vote against a reference answer."""

from __future__ import annotations

import pytest

from ttrl.answers import Score, score, vote


def test_pass_at_1_counts_every_spelling_of_the_reference() -> None:
    answers = [r"\frac{1}{2}", "0.5", "2", None, "1/2", "3"]
    s = score(vote(answers), answers, "0.50")
    assert s.correct == (True, True, False, False, True, False)
    assert s.rewarded == (True, True, False, False, True, False)
    assert s.pass_at_1 == pytest.approx(3 / 6)
    assert s.majority_correct is True
    assert s.reward_accuracy == pytest.approx(1.0)


def test_a_wrong_majority_is_no_maj_at_k() -> None:
    answers = ["7", "7", "7", "8", None]
    s = score(vote(answers), answers, "8")
    assert s.correct == (False, False, False, True, False)
    assert s.pass_at_1 == pytest.approx(1 / 5)
    assert s.majority_correct is False
    # rollouts 1-4 disagree with the truth, rollout 5 (no answer) agrees: 0 == 0
    assert s.reward_accuracy == pytest.approx(1 / 5)


def test_no_answers_score_zero() -> None:
    s = score(vote([None, None]), [None, None], "1")
    assert s == Score(correct=(False, False), rewarded=(False, False))
    assert (s.pass_at_1, s.majority_correct, s.reward_accuracy) == (0.0, False, 1.0)
    empty = score(vote([]), [], "1")
    assert (empty.pass_at_1, empty.majority_correct, empty.reward_accuracy) == (0.0, False, 0.0)


def test_one_equivalent_call_per_cluster() -> None:
    calls: list[tuple[str | None, str | None]] = []

    def counting(a: str | None, b: str | None) -> bool:
        calls.append((a, b))
        return a == b

    answers = ["4", "4.0", "4", "5", None, "5"]
    s = score(vote(answers), answers, "4", counting)
    assert calls == [("4", "4"), ("5", "4")]  # each cluster's first answer, winner first
    assert s.correct == (True, True, True, False, False, False)


def test_score_needs_one_answer_per_vote_member() -> None:
    with pytest.raises(ValueError):
        score(vote(["1", "2"]), ["1"], "1")
