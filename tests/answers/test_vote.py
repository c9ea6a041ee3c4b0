"""vote(): majority of equivalent answers, vote share, ties and rewards (TTRL)."""

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttrl.answers import AnswersConfig, Key, configure, get_config, pooled_vote, vote


def test_equivalent_spellings_form_one_cluster():
    v = vote([r"\frac{1}{2}", "0.5", "2", None, r"\dfrac12", "2", "1/2", ""])
    assert v.label == r"\frac{1}{2}"  # first of the most frequent spellings in the winner
    assert v.label_key == Key("num", "1/2")
    assert (v.count, v.n, v.n_distinct, v.tie) == (4, 8, 2, False)
    assert v.share == 0.5  # N counts the two rollouts without an answer
    assert v.rewards == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert v.membership == (0, 0, 1, None, 0, 1, 0, None)
    assert v.sizes == (4, 2)


def test_label_is_the_most_frequent_spelling():
    v = vote(["0.5", r"\frac{1}{2}", r"\frac{1}{2}", "3"])
    assert v.label == r"\frac{1}{2}" and v.count == 3


def test_tie_goes_to_the_cluster_seen_first():
    v = vote(["3", "5", "5", "3.0", None])
    assert v.tie and v.label == "3" and v.count == 2
    assert v.rewards == [1.0, 0.0, 0.0, 1.0, 0.0]
    swapped = vote(["5", "3", "5", "3.0"])
    assert swapped.tie and swapped.label == "5"


def test_symbolic_clusters_merge_through_verify():
    v = vote(["(x+1)^2", "x^2+2x+1", "x^2+1", "x^{2}+2x+1"])
    assert v.count == 3 and v.n_distinct == 2 and not v.tie
    assert v.rewards == [1.0, 1.0, 0.0, 1.0]


def test_no_answers_at_all():
    v = vote([None, None, "  "])
    assert (v.label, v.label_key, v.count, v.share, v.n_distinct, v.tie) == (
        None,
        None,
        0,
        0.0,
        0,
        False,
    )
    assert v.rewards == [0.0, 0.0, 0.0]
    assert vote([]).n == 0


def test_near_misses_never_merge():
    v = vote(["1/2", "2", "0.333", r"\frac13", "(1,2)", "[1,2]"])
    assert v.n_distinct == 6 and v.tie and v.count == 1


def test_vote_from_worker_threads():
    answers = [r"\sqrt{8}", r"2\sqrt2", "x^2", "(x)^2", "3"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(vote(answers))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(r.count == 2 and r.label == r"\sqrt{8}" and r.tie for r in results)


SPELLINGS = ["1/2", "0.5", r"\frac12", "2", "2.0", r"\sqrt{2}", "(1,2)", r"\{1,2\}", "B", "(B)"]


def _check_shares(v, answers):
    assert 0.0 <= v.share <= 1.0
    assert sum(v.sizes) / max(len(answers), 1) <= 1.0
    assert sum(v.sizes) == sum(a is not None and bool(a.strip()) for a in answers)
    assert sum(v.rewards) == v.count
    assert len(v.rewards) == len(answers)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.none() | st.sampled_from(SPELLINGS), max_size=64))
def test_vote_shares_sum_to_at_most_one(answers):
    _check_shares(vote(answers), answers)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.none() | st.text(max_size=30), max_size=16))
def test_vote_on_arbitrary_text_is_well_formed(answers):
    # Random strings are almost all new symbolic keys; the property concerns the vote,
    # so the sympy tier is switched off to keep this fast.
    config = get_config()
    configure(AnswersConfig(symbolic=False, timeout_s=config.timeout_s))
    try:
        _check_shares(vote(answers), answers)
    finally:
        configure(config)


def test_vote_names_a_bad_input():
    with pytest.raises(TypeError, match=r"answers\[1\] is int"):
        vote(["3", 3])  # type: ignore[list-item]


def test_a_pooled_vote_labels_with_all_answers_and_rewards_this_pass():
    """daemon.vote_window: earlier passes outvote this pass's own majority; rewards and
    per-rollout keys stay this pass's, the share is the pooled one."""
    v = pooled_vote(["7", "7", "9"], ["9", "9", "9", None])
    assert vote(["7", "7", "9"]).label == "7"
    assert (v.label, v.count, v.n, v.share) == ("9", 4, 7, 4 / 7)
    assert v.rewards == [0.0, 0.0, 1.0]
    assert v.keys == vote(["7", "7", "9"]).keys
    assert pooled_vote(["7", "9"], ["9", "7"]).label == "7"  # a tie: this pass wrote 7 first
    assert pooled_vote(["7", "9"], []) == vote(["7", "9"])
