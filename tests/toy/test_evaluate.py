"""Grading for ``ttrl eval``: greedy accuracy, pass@1 and maj@n on labelled problems."""

from __future__ import annotations

import io

import pytest
import typer
from typer.testing import CliRunner

from ttrl.toy.cli import eval_command
from ttrl.toy.evaluate import ProblemScore, read_labelled, score_problem, summarize


def test_score_problem_grades_samples_and_their_majority() -> None:
    samples = [
        "\\boxed{3}",
        "12 = 2\n\\boxed{2}",
        "\\boxed{3}",
        "none",
        "\\boxed{2.0}",
        "\\boxed{2}",
    ]
    score = score_problem("2", "\\boxed{2}", samples)
    # "2" and "2.0" are one answer: 3 of 6 votes beat the 2 for "3", though "3" came first.
    assert score == ProblemScore(
        greedy_correct=True, samples_correct=3, n=6, majority_correct=True, majority_share=0.5
    )


def test_score_problem_with_a_wrong_majority() -> None:
    score = score_problem("7", "\\boxed{8}", ["\\boxed{8}", "\\boxed{8}", "\\boxed{7}"])
    assert (score.greedy_correct, score.samples_correct, score.majority_correct) == (
        False,
        1,
        False,
    )
    assert score.majority_share == pytest.approx(2 / 3)


def test_summarize_averages_over_problems() -> None:
    scores = [
        ProblemScore(True, 4, 4, True, 1.0),
        ProblemScore(False, 1, 4, False, 0.5),
    ]
    report = summarize(scores, model="m", temperature=1.0, seconds=2.0)
    assert (report.greedy_accuracy, report.pass_at_1, report.maj_at_n) == (0.5, 0.625, 0.5)
    assert report.mean_majority_share == 0.75
    data = report.to_dict()
    assert (data["maj@4"], data["pass@1"], data["problems"]) == (0.5, 0.625, 2)
    assert report.groups == {}


def test_summarize_breaks_metrics_down_by_group() -> None:
    scores = [
        ProblemScore(True, 4, 4, True, 1.0),
        ProblemScore(False, 2, 4, True, 0.5),
        ProblemScore(False, 0, 4, False, 0.5),
    ]
    report = summarize(scores, "m", 1.0, 0.0, groups=["level 1", "level 2", "level 2"])
    assert report.groups == {
        "level 1": {"problems": 1, "greedy_accuracy": 1.0, "pass@1": 1.0, "maj@4": 1.0},
        "level 2": {"problems": 2, "greedy_accuracy": 0.0, "pass@1": 0.25, "maj@4": 0.5},
    }
    with pytest.raises(ValueError, match="problem set was empty"):
        summarize([], model="m", temperature=1.0, seconds=0.0)


def test_read_labelled_needs_a_reference_answer_and_names_bad_lines() -> None:
    good = b'{"prompt": "What is 1 + 2?", "reference_answer": 3, "meta": {"level": 1}}\n'
    [problem] = read_labelled(io.BufferedReader(io.BytesIO(good)), "p.jsonl")
    assert (problem.prompt, problem.reference, problem.group) == ("What is 1 + 2?", "3", "level 1")
    missing = good + b'{"prompt": "What is 2 + 2?"}\n'
    with pytest.raises(ValueError, match=r"1 problem\(s\) lack reference_answer \(record\(s\) 2\)"):
        read_labelled(io.BytesIO(missing), "p.jsonl")
    with pytest.raises(ValueError, match=r"p\.jsonl: line 1: malformed JSON"):
        read_labelled(io.BytesIO(b"{oops\n"), "p.jsonl")
    with pytest.raises(ValueError, match="no problems"):
        read_labelled(io.BytesIO(b""), "p.jsonl")


def test_read_labelled_reads_csv_too() -> None:
    data = b'prompt,reference_answer\n"What is 1 + 2?",3\n'
    [problem] = read_labelled(io.BytesIO(data), "p.csv")
    assert (problem.reference, problem.group) == ("3", None)


def eval_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(eval_command)
    return app


def test_eval_command_refuses_greedy_and_unlabelled_files_before_loading_a_model(
    tmp_path,
) -> None:
    unlabelled = tmp_path / "p.jsonl"
    unlabelled.write_text('{"prompt": "What is 1 + 2?"}\n')
    runner = CliRunner(env={"COLUMNS": "400"})  # keep rich from wrapping the messages
    greedy = runner.invoke(eval_app(), ["--file", str(unlabelled), "--temperature", "0"])
    assert greedy.exit_code == 2
    assert "pass@1 and maj@n need samples" in greedy.output
    missing = runner.invoke(eval_app(), ["--file", str(unlabelled), "--model", "/nonexistent"])
    assert missing.exit_code == 2
    assert "lack reference_answer" in missing.output
    labelled = tmp_path / "q.jsonl"
    labelled.write_text('{"prompt": "What is 1 + 2?", "reference_answer": "3"}\n')
    no_model = runner.invoke(eval_app(), ["--file", str(labelled), "--model", str(tmp_path)])
    assert no_model.exit_code == 2
    assert "no config.json" in no_model.output
