"""The synthetic arithmetic task: deterministic, correct, and in ``ttrl enqueue``'s format."""

from __future__ import annotations

import io
import json
import re

import pytest
from typer.testing import CliRunner

from ttrl import intake
from ttrl.config import IntakeConfig
from ttrl.toy.cli import toy_app
from ttrl.toy.task import LEVELS, TEST_SHARE, generate_problems, split_of


def test_same_seed_same_problems_other_seed_other_problems() -> None:
    first = list(generate_problems(3, 40))
    assert first == list(generate_problems(3, 40))
    assert first != list(generate_problems(4, 40))


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_every_step_is_right_and_the_box_holds_the_value_of_the_prompt(level: int) -> None:
    for problem in generate_problems(11, 50, (level,)):
        question = re.fullmatch(r"What is ([\d +*]+)\?", problem.prompt)
        assert question is not None
        expression = question.group(1)
        assert problem.answer == eval(expression)  # digits, + and * only (matched above)
        lines = problem.completion().split("\n")
        assert lines[0] == ""  # the completion starts on a new line after the question
        n_terms, n_products = LEVELS[level]
        assert len(lines) - 2 == n_products + n_terms - 1
        for step in lines[1:-1]:
            left, right = step.split(" = ")
            assert eval(left) == int(right)
        assert lines[-1] == f"\\boxed{{{problem.answer}}}"


def test_solutions_add_the_values_in_every_order() -> None:
    """Several paths to one answer: what makes the majority beat greedy decoding."""
    first_sums = set()
    for problem in generate_problems(5, 200, (2,), any_order=True):
        terms = re.findall(r"\d+", problem.prompt)
        if len(set(terms)) < 3:
            continue  # a repeated term would make the positions ambiguous
        first = problem.completion().split("\n")[1].split(" = ")[0].split(" + ")
        first_sums.add((terms.index(first[0]), terms.index(first[1])))
    assert len(first_sums) == 6  # any ordered pair of the three terms starts the sum
    assert {p.completion().split("\n")[1][:5] for p in generate_problems(5, 50, (2,))} == {
        p.prompt[8:13] for p in generate_problems(5, 50, (2,))
    }  # without it: left to right


def test_levels_cycle_so_any_prefix_is_balanced() -> None:
    levels = [p.level for p in generate_problems(0, 8)]
    assert levels == [1, 2, 3, 4, 1, 2, 3, 4]
    assert {p.level for p in generate_problems(0, 6, (2, 4))} == {2, 4}


def test_test_problems_are_never_training_problems() -> None:
    test = list(generate_problems(0, 400))
    train = list(generate_problems(0, 400, split="train"))
    assert {split_of(p.prompt) for p in test} == {"test"}
    assert {split_of(p.prompt) for p in train} == {"train"}
    assert not {p.prompt for p in test} & {p.prompt for p in train}
    # The split is a fixed share of all problems, whatever the seed.
    every = [f"What is {a} + {b}?" for a in range(10, 100) for b in range(10, 100)]
    share = sum(split_of(prompt) == "test" for prompt in every) / len(every)
    assert abs(share - 1 / TEST_SHARE) < 0.02


def test_unknown_level_and_negative_count_are_refused() -> None:
    with pytest.raises(ValueError, match=r"level 9 is unknown: choose one of \[1, 2, 3, 4\]"):
        list(generate_problems(0, 1, (9,)))
    with pytest.raises(ValueError, match="count must be >= 0"):
        list(generate_problems(0, -1))


def test_problems_command_writes_jsonl_that_enqueue_accepts(tmp_path) -> None:
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(
        toy_app, ["problems", "--seed", "5", "--count", "12", "--level", "3", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    parsed = intake.parse(io.BytesIO(out.read_bytes()), "jsonl", IntakeConfig())
    assert parsed.errors == []
    assert len(parsed.problems) == 12
    expected = list(generate_problems(5, 12, (3,)))
    assert [p.prompt for p in parsed.problems] == [e.prompt for e in expected]
    assert [p.reference_answer for p in parsed.problems] == [str(e.answer) for e in expected]
    assert all(p.meta is not None and p.meta["level"] == 3 for p in parsed.problems)


def test_problems_command_to_stdout_and_bad_level() -> None:
    runner = CliRunner()
    result = runner.invoke(toy_app, ["problems", "--seed", "1", "--count", "2"])
    assert result.exit_code == 0
    assert [json.loads(line)["meta"]["level"] for line in result.stdout.splitlines()] == [1, 2]
    bad = runner.invoke(toy_app, ["problems", "--seed", "1", "--level", "7"])
    assert bad.exit_code != 0
    assert "level 7 is unknown" in bad.output


def test_build_command_refuses_a_bad_stop_share_before_training(tmp_path) -> None:
    out = tmp_path / "model"
    bad = CliRunner(env={"COLUMNS": "400"}).invoke(
        toy_app, ["build", "--stop-share", "1.5", "-o", str(out)]
    )
    assert bad.exit_code == 2
    assert "--stop-share" in bad.output and "stop_share must be in (0, 1], got 1.5" in bad.output
    assert not out.exists()
