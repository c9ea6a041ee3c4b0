"""The synthetic task of the tiny model: multi-step arithmetic solved as a chain of steps.

A problem is a sum of 2 digit numbers and, from level 3 on, of a product of two digits;
the partial sums have 2-3 digits. The solution first evaluates the product, then adds
the values in an order drawn at random (``any_order``, the shipped model's training data)
or left to right, one equation a line, and ends in ``\\boxed{answer}`` like the solutions
of Qwen2.5-Math that TTRL votes on. Every step is a chance for a sampled solution to slip
a digit, so errors scatter over many wrong answers while the right one stays the mode: the
gap between a single sample and the majority that TTRL (Zuo et al. 2025) learns from. A
model trained on solutions in any order has several paths to one answer (six for three
values) and slips on different steps on each, so its majority beats even greedy decoding,
which follows one path: the self-consistency gap (Wang et al. 2023), there at
temperature 1.0.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "test"]

# level -> (number of terms, how many of them are products)
LEVELS: dict[int, tuple[int, int]] = {
    1: (2, 0),  # 47 + 58
    2: (3, 0),  # 47 + 58 + 91
    3: (2, 1),  # 8 * 7 + 47
    4: (3, 1),  # 47 + 8 * 7 + 91
}


# One problem in this many is reserved for evaluation. The sum spaces are small (8100
# problems at level 1), so a seed alone could not keep a training run off a test set.
TEST_SHARE = 8


def split_of(prompt: str) -> Split:
    """Which side of the train/test split a problem is on: a hash of its prompt decides."""
    return "test" if hashlib.sha256(prompt.encode()).digest()[0] % TEST_SHARE == 0 else "train"


@dataclass(frozen=True)
class Problem:
    """One problem: the prompt the engine sees, the worked solution, the final answer."""

    prompt: str
    solution: str
    answer: int
    level: int

    def completion(self) -> str:
        """The text a perfect model generates after :attr:`prompt` (EOS not included)."""
        return "\n" + self.solution

    def to_record(self) -> dict[str, object]:
        """The JSONL row for ``ttrl enqueue``; ``reference_answer`` is for dashboards only."""
        return {
            "prompt": self.prompt,
            "reference_answer": str(self.answer),
            "meta": {"source": "ttrl.toy", "level": self.level},
        }


def _term(rng: random.Random, product: bool) -> tuple[int, int | None]:
    # Operands this small keep every step within reach of a model trained in minutes on
    # a CPU: in our runs it learned 2 digit sums but not 2 digit x 1 digit products.
    if product:
        return rng.randint(2, 9), rng.randint(2, 9)
    return rng.randint(10, 99), None


def make_problem(rng: random.Random, level: int, split: Split, any_order: bool = False) -> Problem:
    """Draw one problem of ``level`` (see :data:`LEVELS`) on the ``split`` side from ``rng``;
    with ``any_order`` its solution adds the values in an order drawn from ``rng``."""
    problem = _draw(rng, level, any_order)
    while split_of(problem.prompt) != split:
        problem = _draw(rng, level, any_order)
    return problem


def _draw(rng: random.Random, level: int, any_order: bool) -> Problem:
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is unknown: choose one of {sorted(LEVELS)}")
    n_terms, n_products = LEVELS[level]
    product_at = set(rng.sample(range(n_terms), n_products))
    terms = [_term(rng, i in product_at) for i in range(n_terms)]

    steps: list[str] = []
    values: list[int] = []
    for a, b in terms:
        if b is None:
            values.append(a)
        else:
            steps.append(f"{a} * {b} = {a * b}")
            values.append(a * b)
    if any_order:
        rng.shuffle(values)  # the order of the additions: several paths to one answer
    total = values[0]
    for value in values[1:]:
        steps.append(f"{total} + {value} = {total + value}")
        total += value

    expression = " + ".join(str(a) if b is None else f"{a} * {b}" for a, b in terms)
    solution = "\n".join([*steps, f"\\boxed{{{total}}}"])
    return Problem(prompt=f"What is {expression}?", solution=solution, answer=total, level=level)


def generate_problems(
    seed: int | str,
    count: int,
    levels: tuple[int, ...] | None = None,
    split: Split = "test",
    any_order: bool = False,
) -> Iterator[Problem]:
    """Yield ``count`` problems, deterministic in ``seed``; levels cycle through ``levels``.

    ``split="test"`` (the default, for ``ttrl toy problems``, evaluation and the daemon)
    draws only problems that training never sees; training draws ``"train"``. ``any_order``:
    see :func:`make_problem` (it draws from the same stream, so the problems differ too).

    Cycling (rather than drawing) the level keeps every prefix of the stream balanced, so a
    held-out set of 256 holds 64 problems of each level.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    levels = levels or tuple(sorted(LEVELS))
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"level {level!r} is unknown: choose one of {sorted(LEVELS)}")
    rng = random.Random(seed)
    for i in range(count):
        yield make_problem(rng, levels[i % len(levels)], split, any_order)
