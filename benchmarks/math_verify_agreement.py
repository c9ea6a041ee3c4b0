"""Agreement of ttrl's extract -> equivalent with math-verify on Math-Verify's regression suite.

The cases (`benchmarks/math_verify_cases.json`) are the gold / prediction / expected-verdict
parameters of Math-Verify 0.9.0's own tests (from its PyPI sdist), with the comparison
settings each test passes. For every case this script computes

- math-verify's verdict: `parse` + `verify` with that test's settings (its `compare_strings`
  helper: `LatexExtractionConfig(boxed_match_priority=0)` and/or `ExprExtractionConfig()`);
- ttrl's verdict: `equivalent(extract(gold), extract(pred))` (a bare reference such as
  `$28\\%$` is its own answer: `extract` reads short answer-only texts whole).

"Default settings" are the cases whose comparison uses math-verify's defaults (precision 6,
strict, no set/relation comparison). A *false merge* is a case ttrl calls equivalent although
the suite expects "different". Prints the figures and every disagreement:

    .venv/bin/python benchmarks/math_verify_agreement.py [--all] [--quiet]
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

CASES = Path(__file__).with_name("math_verify_cases.json")


def math_verify_verdict(case: dict) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    if case["plain_parse"]:
        return bool(verify(parse(case["gold"]), parse(case["pred"])))
    targets = []
    if "latex" in case["match_types"]:
        targets.append(LatexExtractionConfig(boxed_match_priority=0))
    if "expr" in case["match_types"]:
        targets.append(ExprExtractionConfig())
    gold, pred = parse(case["gold"], targets), parse(case["pred"], targets)
    return bool(
        verify(
            gold,
            pred,
            float_rounding=case["precision"],
            strict=case["strict"],
            allow_set_relation_comp=case["allow_set_relation_comp"],
        )
    )


def ttrl_verdict(case: dict) -> tuple[bool, str | None, str | None]:
    from ttrl.answers import equivalent, extract

    gold, pred = extract(case["gold"]), extract(case["pred"])
    return equivalent(gold, pred), gold, pred


def is_default(case: dict) -> bool:
    return case["precision"] == 6 and case["strict"] and not case["allow_set_relation_comp"]


def _short(text: str | None, width: int = 70) -> str:
    if text is None:
        return "None"
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 20] + " ... " + text[-15:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="all cases, not only default ones")
    parser.add_argument("--quiet", action="store_true", help="figures only")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="ttrl's bound on one sympy call (s)"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    data = json.loads(CASES.read_text())
    cases = [c for c in data["cases"] if args.all or is_default(c)]

    from ttrl.answers import AnswersConfig, configure, metrics, warm_up

    configure(AnswersConfig(timeout_s=args.timeout))
    warm_up()
    rows = []
    t_ttrl = t_mv = 0.0
    for i, case in enumerate(cases):
        start = time.perf_counter()
        ours, gold, pred = ttrl_verdict(case)
        t_ttrl += time.perf_counter() - start
        start = time.perf_counter()
        try:
            theirs = math_verify_verdict(case)
        except Exception:  # a math-verify failure is its "not equivalent"
            theirs = False
        t_mv += time.perf_counter() - start
        rows.append((i, case, ours, theirs, gold, pred))

    n = len(rows)
    agree = [r for r in rows if r[2] == r[3]]
    right = [r for r in rows if r[2] == bool(r[1]["expected"])]
    mv_right = [r for r in rows if r[3] == bool(r[1]["expected"])]
    # A pair the suite grades both ways with opposite verdicts (math-verify's set/relation
    # comparison depends on which side is the gold): a symmetric relation must disagree with
    # one of the two, so such a case is reported apart, not counted as a false merge.
    verdicts = {(c["gold"], c["pred"]): c["expected"] for c in data["cases"]}

    def order_dependent(case: dict) -> bool:
        mirror = verdicts.get((case["pred"], case["gold"]))
        return mirror is not None and mirror != case["expected"]

    merged = [r for r in rows if r[2] and not r[1]["expected"]]
    false_merges = [r for r in merged if not order_dependent(r[1])]
    asymmetric = [r for r in merged if order_dependent(r[1])]
    merges_mv_rejects = [r for r in rows if r[2] and not r[3]]
    which = "all" if args.all else "default-settings"
    print(f"{n} {which} cases from Math-Verify 0.9.0's tests")
    print(f"agreement with math-verify      {len(agree)}/{n} = {len(agree) / n:.1%}")
    print(f"ttrl matches expected verdict   {len(right)}/{n} = {len(right) / n:.1%}")
    print(f"math-verify matches expected    {len(mv_right)}/{n} = {len(mv_right) / n:.1%}")
    print(f"false merges (ttrl equal, suite expects different): {len(false_merges)}")
    print(
        f"  + {len(asymmetric)} equal where the suite's verdict depends on argument order "
        + ", ".join(f"#{r[0]}" for r in asymmetric)
    )
    print(f"ttrl equal where math-verify says different:        {len(merges_mv_rejects)}")
    print(
        f"time: ttrl {t_ttrl:.2f} s, math-verify {t_mv:.2f} s; ttrl sympy timeouts "
        f"{metrics.timeouts()} (bound {args.timeout} s per call)"
    )
    if not args.quiet:
        for i, case, ours, theirs, gold, pred in rows:
            if ours == theirs and ours == bool(case["expected"]):
                continue
            print(
                f"\n#{i} {case['source']} expected={case['expected']} math-verify={int(theirs)}"
                f" ttrl={int(ours)}\n  gold {_short(case['gold'])} -> {_short(gold)}"
                f"\n  pred {_short(case['pred'])} -> {_short(pred)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
