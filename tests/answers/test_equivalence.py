"""equivalent() and canonical() on the labelled pair table (issue 3: >= 250 pairs, >= 99%)."""

import runpy
from pathlib import Path

import pytest

from ttrl.answers import Key, canonical, equivalent

# Loaded by path: the test folders are not packages.
PAIRS = runpy.run_path(str(Path(__file__).with_name("answer_pairs.py")))["PAIRS"]

MIN_ACCURACY = 0.99


def test_pair_table_accuracy():
    assert len(PAIRS) >= 250
    misses = [(cat, a, b, want) for a, b, want, cat in PAIRS if equivalent(a, b) != want]
    accuracy = 1 - len(misses) / len(PAIRS)
    report = "\n".join(
        f"  MISS [{cat}] {a!r} vs {b!r}: expected {'equivalent' if want else 'different'}; "
        f"keys {canonical(a)} | {canonical(b)}"
        for cat, a, b, want in misses
    )
    print(f"\npair table: {len(PAIRS) - len(misses)}/{len(PAIRS)} = {accuracy:.2%}\n{report}")
    assert accuracy >= MIN_ACCURACY, report


def test_equivalence_is_symmetric_on_the_table():
    asymmetric = [(a, b) for a, b, _, _ in PAIRS if equivalent(a, b) != equivalent(b, a)]
    assert asymmetric == []


@pytest.mark.parametrize(
    ("answer", "key"),
    [
        (r"\dfrac{1}{2}", Key("num", "1/2")),
        ("0.5", Key("num", "1/2")),
        (r"\frac{\sqrt{3}}{2}", Key("num", "1/2*sqrt(3)")),
        (r"\frac{1}{1+\sqrt{2}}", Key("num", "-1 + sqrt(2)")),  # via sympy, back to exact
        (r"\frac{3\pi}{4}", Key("num", "3/4*pi")),
        (r"1.5\times10^{3}", Key("num", "1500")),
        (r"\{3, 1, 2\}", Key("set", "{1,2,3}")),
        (r"[1,2)\cup(3,\infty)", Key("union", "(3,oo) U [1,2)")),
        (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", Key("matrix", "[[1,2],[3,4]]")),
        (r"\text{(C)}", Key("choice", "C")),
        ("No Solution", Key("set", "{}")),  # the empty solution set, like \\emptyset
        ("Evelyn", Key("text", "evelyn")),
    ],
)
def test_canonical_keys(answer, key):
    assert canonical(answer) == key
    assert str(key) == f"{key.kind}:{key.text}"


def test_exact_kinds_are_decided_without_sympy():
    assert canonical("7").exact and canonical(r"\{1,2\}").exact
    assert not canonical("x^2+1").exact  # a symbolic key may still equal another one


def test_canonical_rejects_non_strings():
    with pytest.raises(TypeError, match="skip None"):
        canonical(None)  # type: ignore[arg-type]


def test_none_is_equivalent_to_nothing():
    assert not equivalent(None, None)
    assert not equivalent("3", None)
    assert not equivalent("", "")
