"""Dashboard grading of a vote against a reference answer (never a reward)."""

from __future__ import annotations

import pytest

from ttrl.answers import equivalent, vote
from ttrl.daemon.grading import grade


def test_grading_counts_clusters_against_the_reference() -> None:
    answers = [r"\frac{1}{2}", "0.5", "2", None, "1/2", "3"]
    v = vote(answers)
    g = grade(v, answers, "0.50", equivalent)
    assert g is not None
    assert g.label_correct is True
    assert g.pass_at_1 == pytest.approx(3 / 6)  # the three spellings of one half
    assert g.reward_accuracy == pytest.approx(1.0)  # majority reward == true reward everywhere


def test_wrong_majority_has_low_reward_accuracy() -> None:
    answers = ["7", "7", "7", "8", None]
    g = grade(vote(answers), answers, "8", equivalent)
    assert g is not None
    assert g.label_correct is False
    assert g.pass_at_1 == pytest.approx(1 / 5)
    # rollouts 1-4 disagree with the truth, rollout 5 (no answer) agrees: 0 == 0
    assert g.reward_accuracy == pytest.approx(1 / 5)


def test_no_reference_or_no_rollouts_is_not_graded() -> None:
    assert grade(vote(["1"]), ["1"], None, equivalent) is None
    assert grade(vote([]), [], "1", equivalent) is None


def test_a_tally_made_ahead_gives_the_same_vote_record() -> None:
    """The daemon tallies a batch on a thread while the next one samples; the record it
    stores must be the one a tally at write time would give."""
    from ttrl.daemon.voting import tally, vote_record
    from ttrl.engines.base import Completion

    texts = [r"so \boxed{12}", r"\boxed{12.0}", r"\boxed{13}", "no answer", "x\x00 \\boxed{12}"]
    samples = [Completion(t, [5], [6, 7], "stop", 3 + i % 2) for i, t in enumerate(texts)]
    ahead = tally(samples)
    assert ahead.answers == ["12", "12.0", "13", None, "12"]
    assert ahead.vote.share == pytest.approx(3 / 5)
    made = vote_record(9, 2, samples, "12", ahead)
    assert made == vote_record(9, 2, samples, "12")
    assert made.model_version == 3 and made.label == "12"
    assert made.rollouts[4].text == "x\ufffd \\boxed{12}"  # NUL replaced for PostgreSQL
