"""Full completions in real model styles through extract -> vote: on the main thread, on a
voting thread (as the daemon tallies), and in spawned processes (each with its own sympy
worker processes), with the same results everywhere and no false merges."""

import multiprocessing
import runpy
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from itertools import combinations
from pathlib import Path

import pytest

from ttrl.answers import (
    canonical,
    configure,
    equivalent,
    extract,
    get_config,
    metrics,
    vote,
)

TABLE = runpy.run_path(str(Path(__file__).with_name("completions.py")))
EXTRACT = TABLE["EXTRACT"]
VOTES = TABLE["VOTES"]
SYMBOLIC_VOTE = TABLE["SYMBOLIC_VOTE"]
DISTINCT = TABLE["DISTINCT"]
SAME = TABLE["SAME"]
ALL_VOTES = {**VOTES, "symbolic": SYMBOLIC_VOTE}


pytestmark = pytest.mark.usefixtures("patient_pool")


@pytest.mark.parametrize(("style", "text", "expected"), EXTRACT, ids=[r[0] for r in EXTRACT])
def test_extract_reads_each_style(style, text, expected):
    assert extract(text) == expected


def _outcome(completions: list[str]):
    v = vote([extract(t) for t in completions])
    return v.label, v.membership, v.label_key


def _check(name, outcome):
    _, label, membership = ALL_VOTES[name]
    got_label, got_membership, _ = outcome
    assert list(got_membership) == membership, name
    assert got_label == label, name


@pytest.mark.parametrize("name", list(VOTES))
def test_vote_on_completions(name):
    _check(name, _outcome(VOTES[name][0]))


def test_symbolic_completions_go_through_the_worker_processes():
    before = metrics.snapshot()["symbolic_calls"]
    label, membership, key = _outcome(SYMBOLIC_VOTE[0])
    _check("symbolic", (label, membership, key))
    assert key.kind == "expr"  # only a sympy worker makes expr keys
    assert metrics.snapshot()["symbolic_calls"] > before


def test_votes_on_a_voting_thread_match_the_main_thread():
    main = {name: _outcome(c) for name, (c, _, _) in ALL_VOTES.items()}
    with ThreadPoolExecutor(max_workers=2) as voter:
        outcomes = list(voter.map(_outcome, [c for c, _, _ in ALL_VOTES.values()]))
    threaded = dict(zip(main, outcomes, strict=True))
    assert threaded == main
    for name, outcome in threaded.items():
        _check(name, outcome)


def test_votes_in_spawned_processes_match_the_main_thread():
    names = list(ALL_VOTES)
    texts = [ALL_VOTES[n][0] for n in names]
    spawn = multiprocessing.get_context("spawn")
    # Each process has its own configuration and sympy workers: give it the same patient bound.
    config = (get_config(),)
    with ProcessPoolExecutor(
        1, mp_context=spawn, initializer=configure, initargs=config
    ) as processes:
        answers = [list(processes.map(extract, t)) for t in texts]
        votes = list(processes.map(vote, answers))
    for name, text, got, v in zip(names, texts, answers, votes, strict=True):
        assert got == [extract(t) for t in text], name
        _check(name, (v.label, v.membership, v.label_key))
        assert v.label_key == vote(got).label_key, name


def test_no_two_distinct_answers_share_a_key_or_are_equivalent():
    keys = {a: canonical(a) for a in DISTINCT}
    shared = [(a, b) for a, b in combinations(DISTINCT, 2) if keys[a] == keys[b]]
    assert shared == []
    merged = [(a, b) for a, b in combinations(DISTINCT, 2) if equivalent(a, b)]
    assert merged == []
    v = vote(DISTINCT)
    assert v.n_distinct == len(DISTINCT) and v.count == 1


@pytest.mark.parametrize("group", SAME, ids=[g[0] for g in SAME])
def test_spellings_of_one_answer_are_equivalent(group):
    apart = [(a, b) for a, b in combinations(group, 2) if not equivalent(a, b)]
    assert apart == []
    assert vote(group).count == len(group)


def test_equivalent_is_symmetric_on_the_completion_answers():
    answers = sorted({a for _, _, a in EXTRACT if a} | set(DISTINCT))
    asymmetric = [
        (a, b) for a, b in combinations(answers, 2) if equivalent(a, b) != equivalent(b, a)
    ]
    assert asymmetric == []


@pytest.mark.parametrize(
    ("answers", "label"),
    [
        ([r"\dfrac{1}{2}", r"\frac{1}{2}", "0.5"], r"\frac{1}{2}"),  # 2 of 3 up to layout
        ([r"\left( 3, \frac{\pi}{2} \right)", r"(3, \frac{\pi}{2})"], r"(3, \frac{\pi}{2})"),
        (["0.5", r"\dfrac12", r"\frac12"], r"\frac12"),
        (["7", "7.0"], "7"),
    ],
)
def test_label_is_a_spelling_written_most_often_in_its_cleanest_form(answers, label):
    v = vote(answers)
    assert v.count == len(answers)
    assert v.label == label and v.label in answers
