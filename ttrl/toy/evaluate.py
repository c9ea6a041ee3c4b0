"""Accuracy of a model on problems with reference answers: greedy, pass@1 and maj@n.

The metrics of the TTRL paper (Zuo et al. 2025, sec. 4): pass@1 is the share of the n
samples whose final answer is equivalent to the reference, averaged over problems; maj@n
is the share of problems whose majority-voted answer (the pseudo-label TTRL trains on)
is. Their gap is what label-free RL can gain. Sampling goes through the daemon's engine
and answers through ``ttrl.answers``, so these numbers measure what the daemon will see.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import BinaryIO

from tqdm.auto import tqdm

from ttrl import intake
from ttrl.answers import equivalent, extract, score, vote
from ttrl.config import IntakeConfig
from ttrl.engines.base import Engine, SamplingParams


@dataclass(frozen=True)
class LabelledProblem:
    """A prompt, the reference answer it is graded against, and an optional group
    (``meta.level`` of toy problems) that the report breaks its metrics down by."""

    prompt: str
    reference: str
    group: str | None = None


@dataclass(frozen=True)
class ProblemScore:
    """How one problem fared: greedy answer, the n samples, and their majority."""

    greedy_correct: bool
    samples_correct: int
    n: int
    majority_correct: bool
    majority_share: float


@dataclass(frozen=True)
class EvalReport:
    """Aggregate metrics over a problem set (fractions in [0, 1])."""

    model: str
    problems: int
    n: int
    temperature: float
    greedy_accuracy: float
    pass_at_1: float
    maj_at_n: float
    mean_majority_share: float
    seconds: float
    # Per group: {"problems", "greedy_accuracy", "pass@1", "maj@n"}; empty without groups.
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, with the maj@n key spelled for this n (e.g. ``maj@16``)."""
        data = asdict(self)
        data[f"maj@{self.n}"] = data.pop("maj_at_n")
        data["pass@1"] = data.pop("pass_at_1")
        return data


def read_labelled(stream: BinaryIO, name: str) -> list[LabelledProblem]:
    """Problems of a JSONL/CSV file in ``ttrl enqueue``'s format; each needs a reference answer.

    Raises:
        ValueError: a line is invalid or lacks ``reference_answer`` (all such lines named).
    """
    head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    parsed = intake.parse(stream, intake.guess_format(name, head), IntakeConfig())
    errors = [str(error) for error in parsed.errors]
    # intake drops blank lines, so only a count can name the records without a reference.
    missing = [i for i, p in enumerate(parsed.problems, 1) if p.reference_answer is None]
    if missing:
        errors.append(
            f"{len(missing)} problem(s) lack reference_answer (record(s) "
            f"{', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}); "
            "ttrl eval grades against it"
        )
    if errors:
        raise ValueError(f"{name}: " + "; ".join(errors))
    if not parsed.problems:
        raise ValueError(f"{name}: no problems in the file")
    return [
        LabelledProblem(p.prompt, p.reference_answer or "", _group(p.meta)) for p in parsed.problems
    ]


def _group(meta: dict[str, object] | None) -> str | None:
    return None if not meta or "level" not in meta else f"level {meta['level']}"


def score_problem(reference: str, greedy_text: str, sample_texts: Sequence[str]) -> ProblemScore:
    """Grade one problem's greedy completion and its n sampled completions."""
    answers = [extract(text) for text in sample_texts]
    majority = vote(answers)
    graded = score(majority, answers, reference)
    return ProblemScore(
        greedy_correct=equivalent(extract(greedy_text), reference),
        samples_correct=sum(graded.correct),
        n=len(answers),
        majority_correct=graded.majority_correct,
        majority_share=majority.share,
    )


def summarize(
    scores: Sequence[ProblemScore],
    model: str,
    temperature: float,
    seconds: float,
    groups: Sequence[str | None] = (),
) -> EvalReport:
    """Average per-problem scores into an :class:`EvalReport`, overall and per group.

    ``groups`` holds each score's group (None: in no group), or is empty.
    """
    if not scores:
        raise ValueError("no scores to summarize: the problem set was empty")
    count = len(scores)
    by_group: dict[str, dict[str, float]] = {}
    for name in sorted({g for g in groups if g is not None}):
        part = summarize([s for s, g in zip(scores, groups, strict=True) if g == name], "", 0, 0)
        by_group[name] = {
            "problems": part.problems,
            "greedy_accuracy": part.greedy_accuracy,
            "pass@1": part.pass_at_1,
            f"maj@{part.n}": part.maj_at_n,
        }
    return EvalReport(
        model=model,
        problems=count,
        n=scores[0].n,
        temperature=temperature,
        greedy_accuracy=sum(s.greedy_correct for s in scores) / count,
        pass_at_1=sum(s.samples_correct / s.n for s in scores) / count,
        maj_at_n=sum(s.majority_correct for s in scores) / count,
        mean_majority_share=sum(s.majority_share for s in scores) / count,
        seconds=round(seconds, 1),
        groups=by_group,
    )


def evaluate(
    engine: Engine,
    problems: Sequence[LabelledProblem],
    n: int,
    sampling: SamplingParams,
    model: str,
    chunk: int = 32,
    progress: bool = True,
) -> EvalReport:
    """Greedy-decode and sample ``n`` completions of every problem, then grade them.

    Problems go to the engine ``chunk`` at a time (the progress bar's unit); with
    ``sampling.seed`` set, chunk i samples with seed ``seed + i``, so a rerun with the same
    seed and chunk gives the same numbers.
    """
    if n < 1:
        raise ValueError(f"n={n}: the number of samples per problem must be >= 1")
    if sampling.greedy:
        raise ValueError("sampling.temperature is 0: pass@1 and maj@n need a positive temperature")
    greedy = replace(sampling, temperature=0.0)
    start = time.perf_counter()
    scores: list[ProblemScore] = []
    bar = tqdm(total=len(problems), desc="eval", unit="problem", disable=not progress)
    for index, first in enumerate(range(0, len(problems), chunk)):
        part = problems[first : first + chunk]
        prompts = [p.prompt for p in part]
        seeded = (
            sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + index)
        )
        greedy_texts = [group[0].text for group in engine.generate(prompts, 1, greedy)]
        sampled = engine.generate(prompts, n, seeded)
        for problem, greedy_text, group in zip(part, greedy_texts, sampled, strict=True):
            scores.append(score_problem(problem.reference, greedy_text, [c.text for c in group]))
        bar.update(len(part))
    bar.close()
    seconds = time.perf_counter() - start
    groups = [p.group for p in problems]
    return summarize(scores, model, sampling.temperature, seconds, groups)
