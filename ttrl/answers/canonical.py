"""`canonical(answer) -> Key`: one hashable key per equivalence class, in the common cases.

Tiers, cheapest first:
1. exact (pure Python, no process hop): numbers and Q(sqrt, pi) arithmetic as exact values
   (`exact.py`), multiple-choice letters, and sets / tuples / intervals / unions / matrices
   of those. Exact keys are complete: two exact answers are equivalent iff keys are equal.
2. symbolic (`bounded.py` worker, time-bounded): math-verify's LaTeX parser and
   `sympy.simplify` (constants) or `expand`; if the result is exact it gets the exact key,
   else an "expr" key that `vote` may still merge with another key through `verify`.
3. fallback: "text" (plain words, or LaTeX sympy cannot read) and "raw" (too long, or the
   symbolic call timed out / failed): the cleaned string itself, never compared further.
"""

import re
from typing import NamedTuple

from ttrl.answers import metrics
from ttrl.answers.bounded import SymbolicUnavailable, get_config, pool
from ttrl.answers.clean import clean
from ttrl.answers.exact import MAX_DEPTH, Unsupported, exact_value, format_value

EXACT_KINDS = frozenset({"num", "choice", "set", "seq", "union", "matrix"})
# Kinds a symbolic "expr" may still equal (a letter is a choice, never an expression).
MERGEABLE_KINDS = (EXACT_KINDS - {"choice"}) | {"expr"}


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


_CHOICE = re.compile(r"\(([A-E])\).*|([A-E])\)?")
_MATRIX = re.compile(r"\\begin\{([pbB]?matrix)\}(.*)\\end\{\1\}", re.DOTALL)
_WORDS = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
_INFINITY = {"\\infty": "oo", "+\\infty": "oo", "-\\infty": "-oo"}
_EMPTY_SET = {"\\emptyset", "\\varnothing", "\\{\\}"}
_OPEN, _CLOSE = "([{", ")]}"


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside any brackets; literal `\\{`/`\\}` count as brackets too."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _outer_group(text: str) -> bool:
    """Whether text[0] opens a bracket that closes exactly at text[-1]."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def _element(text: str, depth: int) -> str | None:
    """Exact key text of one element of a structure (or of a whole answer), else None."""
    if text in _INFINITY:
        return _INFINITY[text]
    structure = _structure(text, depth)
    if structure is not None:
        return structure.text
    try:
        return format_value(exact_value(text))
    except Unsupported:
        return None


def _elements(parts: list[str], depth: int) -> list[str] | None:
    keys = [_element(part, depth) for part in parts]
    return None if any(k is None for k in keys) else keys  # type: ignore[return-value]


def _structure(text: str, depth: int = 0) -> Key | None:
    """Exact key of a set, tuple/interval, union of intervals or matrix of exact elements.

    Structures nested deeper than ``MAX_DEPTH`` are left to the string key (no recursion
    error, and each level costs one pass over the text).
    """
    if depth > MAX_DEPTH:
        return None
    depth += 1
    if text in _EMPTY_SET:
        return Key("set", "{}")
    matrix = _MATRIX.fullmatch(text)
    if matrix:
        rows = [
            _elements(_split_top(row, "&"), depth) for row in _split_top(matrix.group(2), "\\\\")
        ]
        if any(row is None for row in rows):
            return None
        return Key("matrix", "[" + ",".join("[" + ",".join(r) + "]" for r in rows) + "]")
    if text.startswith("\\{") and text.endswith("\\}") and _outer_group(text[1:]):
        elements = _elements(_split_top(text[2:-2], ","), depth)
        return None if elements is None else Key("set", "{" + ",".join(sorted(set(elements))) + "}")
    unions = _split_top(text, "\\cup")
    if len(unions) > 1:
        parts = [_structure(part, depth) for part in unions]
        if any(part is None or part.kind != "seq" for part in parts):
            return None
        return Key("union", " U ".join(sorted(part.text for part in parts)))  # type: ignore[union-attr]
    if text[:1] in "([" and text[-1:] in ")]" and _outer_group(text):
        parts = _split_top(text[1:-1], ",")
        if len(parts) < 2:
            return None
        elements = _elements(parts, depth)
        return None if elements is None else Key("seq", text[0] + ",".join(elements) + text[-1])
    parts = _split_top(text, ",")
    if len(parts) > 1:
        # A bare list ("1, 2") answers "find all solutions": order does not matter.
        elements = _elements(parts, depth)
        return None if elements is None else Key("set", "{" + ",".join(sorted(set(elements))) + "}")
    return None


def exact_key(cleaned: str) -> Key | None:
    """Tier 1: the exact key of a cleaned answer, or None when it needs sympy."""
    choice = _CHOICE.fullmatch(cleaned)
    if choice:
        return Key("choice", choice.group(1) or choice.group(2))
    structure = _structure(cleaned)
    if structure is not None:
        return structure
    if cleaned in _INFINITY:
        return Key("num", _INFINITY[cleaned])
    try:
        return Key("num", format_value(exact_value(cleaned)))
    except Unsupported:
        return None


def _symbolic_key(cleaned: str) -> Key:
    config = get_config()
    if _WORDS.fullmatch(cleaned) and (" " in cleaned or len(cleaned) > 2):
        return Key("text", cleaned.lower())  # "Yes", "no solution": words, not symbols
    if not config.symbolic:
        return Key("text", cleaned)
    if len(cleaned) > config.max_symbolic_chars:
        metrics.incr(metrics.OVERSIZE)
        return Key("raw", cleaned)
    try:
        form = pool().call("canonical", cleaned)
    except SymbolicUnavailable:
        return Key("raw", cleaned)
    if form is None:
        return Key("text", cleaned)
    latex, srepr = form
    return exact_key(clean(latex)) or Key("expr", srepr)


def canonical(answer: str) -> Key:
    """Key shared by equivalent answers: `canonical("\\\\dfrac{1}{2}") == canonical("0.5")`.

    Exact kinds (`num`, `choice`, `set`, `seq`, `union`, `matrix`) are decided without sympy;
    other answers go through a time-bounded sympy worker (see `AnswersConfig.timeout_s`).
    """
    if not isinstance(answer, str):
        raise TypeError(
            f"canonical() takes the answer string, got {type(answer).__name__} {answer!r}; "
            "pass extract()'s result and skip None"
        )
    cleaned = clean(answer)
    return exact_key(cleaned) or _symbolic_key(cleaned)
