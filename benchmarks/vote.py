"""Benchmark: one 64-completion vote, ttrl's extract + vote vs pairwise math-verify.

Each synthetic problem has a true answer and a few wrong ones, each written in the
spellings models use (`\\frac{1}{2}`, `1/2`, `0.5`, `x = 3`, `2\\sqrt{2}` vs `\\sqrt{8}`, ...),
inside full completions in the styles real models write (mostly Qwen-style `\\boxed{}`, also
R1 `<think>` drafts, Minerva "Final Answer: The final answer is $X$.", GSM8K `#### X`
followed by the next question), plus completions cut off before their answer. A share of
problems have symbolic answers (polynomials), which need the sympy worker. The baseline
parses every completion with math-verify and puts each into the first cluster whose
representative it `verify`s with (both directions), the way a grader without canonical keys
clusters; it is given the GSM8K completions without their next question (left in, math-verify
reads its last number: `#### 2941` then "buys 5 more" is `5`). The partitions must be the
same, except for the cut-off completions, whose draft answer math-verify reads and ttrl
does not (they are left out of the comparison).

    .venv/bin/python benchmarks/vote.py [--problems 40] [--symbolic-share 0.1] [--seed 0]
"""

import argparse
import logging
import random
import re
import statistics
import time
from fractions import Fraction

from ttrl.answers import extract, vote, warm_up

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


_WORK = (
    "We first collect the terms and simplify the expression step by step. "
    "Substituting the values gives the equation above, and checking the cases confirms it. "
)


def completion(rng: random.Random, answer: str | None) -> str:
    """A full completion stating `answer` in one of the styles real models use."""
    work = _WORK * rng.randint(2, 6)
    if answer is None:  # cut off: inside the thinking, or inside the last box
        if rng.random() < 0.5:
            return f"<think>\n{work}so maybe \\boxed{{3}}? Let me re-check the"
        return f"{work}Therefore the answer is $\\boxed{{\\frac{{1}}{{"
    style = rng.random()
    if style < 0.7:
        return f"{work}Therefore, the final answer is $\\boxed{{{answer}}}$."
    if style < 0.8:
        return (
            f"<think>\n{work}Maybe \\boxed{{7}}? No, recompute.\n{work}</think>\n\n"
            f"{work}So the answer is \\(\\boxed{{{answer}}}\\)."
        )
    if style < 0.9:
        return f"{work}Final Answer: The final answer is ${answer}$. I hope it is correct."
    if re.fullmatch(r"-?\d+", answer):
        return f"{work}\n#### {answer}\n\nQuestion: A farmer has 17 sheep and buys 5 more."
    return f"{work}The answer is ${answer}$."


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


def pairwise_clusters(texts: list[str]) -> list[int | None]:
    """Baseline: parse each completion, compare to each cluster representative with verify."""
    from math_verify import parse, verify

    reps: list[list] = []
    labels: list[int | None] = []
    for text in texts:
        parsed = parse(text, parsing_timeout=None)
        if not parsed:
            labels.append(None)
            continue
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
    problems = []
    for symbolic in [rng.random() < args.symbolic_share for _ in range(args.problems)]:
        answers = make_problem(rng, symbolic)
        problems.append((symbolic, answers, [completion(rng, a) for a in answers]))
    warm_up()
    pairwise_clusters(["$1$", r"\boxed{\frac{1}{2}}"])  # warm the baseline's parser too

    ours, base, ours_symbolic = [], [], []
    for symbolic, answers, texts in problems:
        start = time.perf_counter()
        result = vote([extract(t) for t in texts])
        elapsed = time.perf_counter() - start
        ours.append(elapsed)
        if symbolic:
            ours_symbolic.append(elapsed)
        start = time.perf_counter()
        labels = pairwise_clusters([t.split("\n\nQuestion:")[0] for t in texts])
        base.append(time.perf_counter() - start)
        answered = [a is not None for a in answers]
        if [m is not None for m in result.membership] != answered:
            raise SystemExit(f"ttrl missed or invented an answer in {texts}")
        kept = [label if ok else None for label, ok in zip(labels, answered, strict=True)]
        if _partition(list(result.membership)) != _partition(kept):
            raise SystemExit(f"cluster mismatch on {answers}")

    med_ours, med_base = statistics.median(ours), statistics.median(base)
    n_sym = len(ours_symbolic)
    print(
        f"{len(problems)} problems x {N_ROLLOUTS} completions ({n_sym} symbolic); "
        "same clusters as pairwise math-verify"
    )
    for name, times in (("ttrl extract+vote", ours), ("pairwise verify", base)):
        median, mean = statistics.median(times) * 1e3, statistics.mean(times) * 1e3
        print(f"{name:<20}  median {median:8.2f} ms   mean {mean:8.2f} ms")
    if ours_symbolic:
        print(
            f"{'ttrl, symbolic only':<20}  median {statistics.median(ours_symbolic) * 1e3:8.2f} ms"
        )
    print(f"speed-up (median)     {med_base / med_ours:8.1f}x   goal: <= 5 ms and >= 20x")


if __name__ == "__main__":
    main()
