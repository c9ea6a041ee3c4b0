"""Benchmark: one 64-answer vote, ttrl.answers.vote vs naive pairwise math-verify clustering.

Each synthetic problem has a true answer and a few wrong ones, each written in the
spellings models use (`\\frac{1}{2}`, `1/2`, `0.5`, `x = 3`, `2\\sqrt{2}` vs `\\sqrt{8}`, ...),
plus rollouts with no answer. A share of problems have symbolic answers (polynomials),
which need the sympy worker. The baseline parses every answer with math-verify and puts
each into the first cluster whose representative it `verify`s with (both directions), the
way a grader without canonical keys clusters. Both must produce the same partition.

    .venv/bin/python benchmarks/vote.py [--problems 40] [--symbolic-share 0.1] [--seed 0]
"""

import argparse
import logging
import random
import statistics
import time
from fractions import Fraction

from ttrl.answers import vote, warm_up

N_ROLLOUTS = 64


def _rational_spellings(q: Fraction) -> list[str]:
    p, d = q.numerator, q.denominator
    if d == 1:
        return [f"{p}", f"{p}.0", f"x = {p}", f"{p:,}" if abs(p) >= 1000 else f"+{p}"]
    sign = "-" if p < 0 else ""
    spellings = [
        f"{sign}\\frac{{{abs(p)}}}{{{d}}}",
        f"{sign}\\dfrac{{{abs(p)}}}{{{d}}}",
        f"{p}/{d}",
        f"{sign}\\frac{{{2 * abs(p)}}}{{{2 * d}}}",
    ]
    if all(f in (2, 5) for f in _prime_factors(d)):
        spellings.append(f"{float(q):g}")
    return spellings


def _prime_factors(n: int) -> set[int]:
    out, f = set(), 2
    while f * f <= n:
        while n % f == 0:
            out.add(f)
            n //= f
        f += 1
    return out | ({n} if n > 1 else set())


def _surd_spellings(a: int, r: int) -> list[str]:
    # a*sqrt(r) with r square-free
    return [f"{a}\\sqrt{{{r}}}", f"\\sqrt{{{a * a * r}}}", f"{a} \\sqrt{r}"]


def _pi_spellings(q: Fraction) -> list[str]:
    p, d = q.numerator, q.denominator
    return [f"\\frac{{{p}\\pi}}{{{d}}}", f"\\frac{{{p}}}{{{d}}}\\pi", f"{p}\\pi/{d}"]


def _tuple_spellings(a: int, b: int) -> list[str]:
    return [f"({a},{b})", f"\\left({a}, {b}\\right)", f"({a}, {b})"]


def _poly_spellings(a: int) -> list[str]:
    # (x+a)^2 expanded and factored
    return [f"(x+{a})^2", f"x^2+{2 * a}x+{a * a}", f"x^{{2}} + {2 * a} x + {a * a}"]


def _value(rng: random.Random, symbolic: bool) -> list[str]:
    """Spellings of one random answer value."""
    if symbolic:
        return _poly_spellings(rng.randint(1, 30))
    kind = rng.choice(["int", "int", "frac", "frac", "surd", "pi", "tuple"])
    if kind == "int":
        return _rational_spellings(Fraction(rng.randint(-50, 3000)))
    if kind == "frac":
        return _rational_spellings(Fraction(rng.randint(1, 40), rng.choice([2, 3, 4, 5, 7, 8])))
    if kind == "surd":
        return _surd_spellings(rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7]))
    if kind == "pi":
        return _pi_spellings(Fraction(rng.randint(1, 9), rng.choice([2, 3, 4, 6])))
    return _tuple_spellings(rng.randint(-9, 9), rng.randint(-9, 9))


def make_problem(rng: random.Random, symbolic: bool) -> list[str | None]:
    """64 rollout answers: a majority value, 2-4 wrong values, a few unanswered."""
    values = [_value(rng, symbolic) for _ in range(rng.randint(3, 5))]
    weights = [rng.uniform(4, 8)] + [rng.uniform(0.5, 2) for _ in values[1:]]
    answers: list[str | None] = []
    for _ in range(N_ROLLOUTS):
        if rng.random() < 0.05:
            answers.append(None)
        else:
            answers.append(rng.choice(rng.choices(values, weights)[0]))
    return answers


def pairwise_clusters(answers: list[str | None]) -> list[int | None]:
    """Baseline: parse each answer, compare to each cluster representative with verify."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]
    reps: list[list] = []
    labels: list[int | None] = []
    for answer in answers:
        if answer is None:
            labels.append(None)
            continue
        parsed = parse(f"${answer}$", config, parsing_timeout=None)
        for i, rep in enumerate(reps):
            if verify(rep, parsed, timeout_seconds=None) and verify(
                parsed, rep, timeout_seconds=None
            ):
                labels.append(i)
                break
        else:
            reps.append(parsed)
            labels.append(len(reps) - 1)
    return labels


def _partition(labels: list[int | None]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(labels):
        if label is not None:
            groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--symbolic-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # math-verify warns that its own timeout is off
    rng = random.Random(args.seed)
    problems = [
        (sym, make_problem(rng, sym))
        for sym in (rng.random() < args.symbolic_share for _ in range(args.problems))
    ]
    warm_up()
    pairwise_clusters(["1", r"\frac{1}{2}"])  # warm the baseline's parser too

    ours, base, ours_symbolic = [], [], []
    for symbolic, answers in problems:
        start = time.perf_counter()
        result = vote(answers)
        elapsed = time.perf_counter() - start
        ours.append(elapsed)
        if symbolic:
            ours_symbolic.append(elapsed)
        start = time.perf_counter()
        labels = pairwise_clusters(answers)
        base.append(time.perf_counter() - start)
        if _partition(list(result.membership)) != _partition(labels):
            raise SystemExit(f"cluster mismatch on {answers}")

    med_ours, med_base = statistics.median(ours), statistics.median(base)
    n_sym = len(ours_symbolic)
    print(f"{len(problems)} problems x {N_ROLLOUTS} answers ({n_sym} symbolic); same clusters")
    for name, times in (("ttrl.answers.vote", ours), ("pairwise verify", base)):
        median, mean = statistics.median(times) * 1e3, statistics.mean(times) * 1e3
        print(f"{name:<20}  median {median:8.2f} ms   mean {mean:8.2f} ms")
    if ours_symbolic:
        print(
            f"{'ttrl, symbolic only':<20}  median {statistics.median(ours_symbolic) * 1e3:8.2f} ms"
        )
    print(f"speed-up (median)     {med_base / med_ours:8.1f}x   goal: <= 5 ms and >= 20x")


if __name__ == "__main__":
    main()
