"""`Key`, the canonical key of an answer, and the exact key texts its kinds are built from.

A number's key text is its exact value's unique form (`exact.py`) or `oo` / `-oo`; sets,
sequences and unions are built from the key texts of their elements, sorted where order
does not matter, so equal keys mean equal answers.
"""

from collections.abc import Iterable
from typing import NamedTuple

from ttrl.answers.exact import Unsupported, exact_value, format_value

EXACT_KINDS = frozenset({"num", "choice", "set", "seq", "union", "matrix", "time", "ratio", "eqs"})
# Kinds a symbolic "expr" may still equal (a letter is a choice, never an expression).
MERGEABLE_KINDS = (EXACT_KINDS - {"choice", "time", "ratio", "eqs"}) | {"expr"}
INFINITY = {"\\infty": "oo", "+\\infty": "oo", "-\\infty": "-oo"}


class Key(NamedTuple):
    """Canonical key of an answer; `str(key)` is its storable form, e.g. `num:1/2`."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.text}"

    @property
    def exact(self) -> bool:
        """Whether equal keys are the only way two answers of this kind can be equivalent."""
        return self.kind in EXACT_KINDS


def number_text(text: str) -> str | None:
    """The key text of a number (`\\frac{2}{4}` -> `1/2`, `-\\infty` -> `-oo`), else None."""
    if text in INFINITY:
        return INFINITY[text]
    try:
        return format_value(exact_value(text))
    except Unsupported:
        return None


def set_key(elements: Iterable[str]) -> Key:
    """The set of these element key texts: order and repeats do not count."""
    return Key("set", "{" + ",".join(sorted(set(elements))) + "}")


def union_key(parts: Iterable[str]) -> Key:
    """The union of these interval key texts, in any order."""
    return Key("union", " U ".join(sorted(parts)))
