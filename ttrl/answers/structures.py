"""Exact keys of structured answers: sets, tuples and intervals, unions, matrices, `x=1, y=2`.

A structure gets an exact key when every element has one (a number or a structure), so
`\\{1, \\frac{1}{2}\\}` and `\\{0.5, 1\\}` share the key `set:{1,1/2}`; anything else is left
to the string and symbolic tiers of `canonical`.
"""

import re

from ttrl.answers.exact import MAX_DEPTH
from ttrl.answers.keys import Key, number_text, set_key, union_key

_MATRIX = re.compile(r"\\begin\{([pbB]?matrix)\}(.*)\\end\{\1\}", re.DOTALL)
_EMPTY_SET = {"\\emptyset", "\\varnothing", "\\{\\}"}
_OPEN, _CLOSE = "([{", ")]}"
# x_1, x_{2}: the roots of one unknown (x, z, t, r, lambda). Not a_1, a_2: sequence terms.
_ROOT_NAME = re.compile(r"^(?:[xzrt]|\\lambda)_\{?[0-9]{1,3}\}?$")
_EQUATION_ITEM = re.compile(r"(\\?[A-Za-z]{1,8}(?:_\{?[A-Za-z0-9]{1,4}\}?)?)=(.+)")


def split_top(text: str, sep: str) -> list[str]:
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
    inner = structure(text, depth)
    return inner.text if inner is not None else number_text(text)


def elements(parts: list[str], depth: int) -> list[str] | None:
    """The exact key texts of all `parts`, or None when one of them has none."""
    keys = []
    for part in parts:
        key = _element(part, depth)
        if key is None:
            return None
        keys.append(key)
    return keys


def expand_pm(parts: list[str]) -> list[str]:
    """`1\\pm\\sqrt{5}` -> `1+\\sqrt{5}`, `1-\\sqrt{5}` (a set element or a whole answer)."""
    out = []
    for part in parts:
        pieces = split_top(part, "\\pm")
        if len(pieces) == 1:
            pieces = split_top(part, "\\mp")
        if len(pieces) == 2 and pieces[1]:
            left, right = pieces
            out += [f"{left}+({right})" if left else f"({right})", f"{left}-({right})"]
        else:
            out.append(part)
    return out


def _equations(parts: list[str], depth: int) -> Key | None:
    """`x=1, y=2` (any order): one value per distinct unknown, never equal to a bare list."""
    items = [_EQUATION_ITEM.fullmatch(part) for part in parts]
    matches = [item for item in items if item is not None]
    if len(matches) < len(items):
        return None
    names = [item.group(1) for item in matches]
    values = elements(expand_pm([item.group(2) for item in matches]), depth)
    if values is None:
        return None
    roots = all(_ROOT_NAME.match(name) for name in names) and len({n[0] for n in names}) == 1
    if roots or len(set(names)) == 1:
        # `p = -1, p = 15/8` or `x_1 = 2, x_2 = 3`: the values of one unknown, a set.
        return set_key(values)
    if len(set(names)) != len(names) or len(values) != len(names):
        return None
    return Key("eqs", ",".join(sorted(f"{n}={v}" for n, v in zip(names, values, strict=True))))


def structure(text: str, depth: int = 0) -> Key | None:
    """Exact key of a set, tuple/interval, union of intervals or matrix of exact elements.

    Structures nested deeper than ``MAX_DEPTH`` are left to the string key (no recursion
    error, and each level costs one pass over the text).
    """
    if depth > MAX_DEPTH:
        return None
    depth += 1
    if text in _EMPTY_SET:
        return set_key([])
    matrix = _MATRIX.fullmatch(text)
    if matrix:
        rows = []
        for row in split_top(matrix.group(2), "\\\\"):
            cells = elements(split_top(row, "&"), depth)
            if cells is None:
                return None
            rows.append("[" + ",".join(cells) + "]")
        return Key("matrix", "[" + ",".join(rows) + "]")
    if text.startswith("\\{") and text.endswith("\\}") and _outer_group(text[1:]):
        members = elements(expand_pm(split_top(text[2:-2], ",")), depth)
        return None if members is None else set_key(members)
    unions = split_top(text, "\\cup")
    if len(unions) > 1:
        intervals = [structure(part, depth) for part in unions]
        seqs = [key.text for key in intervals if key is not None and key.kind == "seq"]
        return union_key(seqs) if len(seqs) == len(intervals) else None
    if text[:1] in "([" and text[-1:] in ")]" and _outer_group(text):
        parts = split_top(text[1:-1], ",")
        if len(parts) < 2:
            return None
        terms = elements(parts, depth)
        return None if terms is None else Key("seq", text[0] + ",".join(terms) + text[-1])
    parts = split_top(text, ",")
    if len(parts) > 1:
        equations = _equations(parts, depth)
        if equations is not None:
            return equations
        # A bare list ("1, 2") answers "find all solutions": order does not matter.
        members = elements(expand_pm(parts), depth)
        return None if members is None else set_key(members)
    return None
