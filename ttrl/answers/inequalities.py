"""Exact keys of inequalities: their solution sets (`x \\le 4` is `(-\\infty, 4]`).

`x \\le 4` -> `(-oo,4]`, `-2 \\le x < 7` -> `[-2,7)`, `5 \\geq x`, `-x > -1`, `|x| \\le 2` ->
`[-2,2]`, `x < -1 \\text{ or } x > 2` -> `(-oo,-1) U (2,oo)`; bounds must have exact values.
"""

import re
from fractions import Fraction

from ttrl.answers.exact import Unsupported, exact_value, format_value
from ttrl.answers.keys import Key, number_text, union_key

_RELATION = re.compile(r"\\(?:leq?(?:slant)?|geq?(?:slant)?|lt|gt|neq?)(?![A-Za-z])|<=|>=|!=|<|>")
_REL_KIND = {
    "<": "<",
    "\\lt": "<",
    "<=": "<=",
    "\\le": "<=",
    "\\leq": "<=",
    "\\leqslant": "<=",
    ">": ">",
    "\\gt": ">",
    ">=": ">=",
    "\\ge": ">=",
    "\\geq": ">=",
    "\\geqslant": ">=",
    "!=": "!=",
    "\\ne": "!=",
    "\\neq": "!=",
}
_OR = re.compile(r"\s*(?:\\lor|\\vee|(?<![A-Za-z])or(?![A-Za-z]))\s*")
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "!=": "!="}
# The unknown of an inequality: `x`, `-x`, `a_1`, `f(x)`, `|z|` is not (two-sided).
_UNKNOWN = re.compile(r"(-?)(\\?[A-Za-z]{1,8}(?:_\{?[A-Za-z0-9]{1,4}\}?)?(?:\([A-Za-z]\))?)")
_ABS = re.compile(
    r"\|\s*\\?[A-Za-z]{1,8}(?:_\{?[A-Za-z0-9]{1,4}\}?)?\s*\||\\lvert\s*[A-Za-z]\s*\\rvert"
)


def _interval(op: str, bound: str) -> Key:
    """The solution set of `x op bound` as an interval (union for `!=`)."""
    if op == "!=":
        return Key("union", f"(-oo,{bound}) U ({bound},oo)")
    if op in ("<", "<="):
        return Key("seq", f"(-oo,{bound}" + (")" if op == "<" else "]"))
    return Key("seq", ("(" if op == ">" else "[") + f"{bound},oo)")


def _rational_bound(text: str) -> Fraction | None:
    try:
        value = exact_value(text)
    except Unsupported:
        return None
    if not value:
        return Fraction(0)
    return value.get((1, 0)) if set(value) == {(1, 0)} else None


def _fmt(q: Fraction) -> str:
    return format_value({(1, 0): q} if q else {})


def _absolute(kinds: list[str], bounds: list[str]) -> Key | None:
    """`|x| \\le 2` -> `[-2,2]`, `1 \\le |z| \\le 3/2` -> `[-3/2,-1] U [1,3/2]` (rational ends)."""
    values = []
    for bound in bounds:
        value = _rational_bound(bound)
        if value is None or value < 0:
            return None
        values.append(value)
    if len(kinds) == 1:
        op, b = kinds[0], values[0]
        if op in ("<", "<="):
            close = ")" if op == "<" else "]"
            return Key("seq", ("(" if op == "<" else "[") + f"{_fmt(-b)},{_fmt(b)}" + close)
        if op in (">", ">="):
            o, c = ("(", ")") if op == ">" else ("[", "]")
            return union_key([f"(-oo,{_fmt(-b)}{c}", f"{o}{_fmt(b)},oo)"])
        return None
    (lo_op, hi_op), (a, b) = kinds, values
    if lo_op not in ("<", "<=") or hi_op not in ("<", "<=") or not a < b:
        return None
    o, c = ("(" if lo_op == "<" else "["), (")" if hi_op == "<" else "]")
    rev_o, rev_c = ("(" if hi_op == "<" else "["), (")" if lo_op == "<" else "]")
    return union_key([f"{rev_o}{_fmt(-b)},{_fmt(-a)}{rev_c}", f"{o}{_fmt(a)},{_fmt(b)}{c}"])


def _one_sided(op: str, left: str, right: str) -> Key | None:
    """`x op c`, `c op x`, `-x op c`, `|x| op c`: the solution set of one relation."""
    if _ABS.fullmatch(left) or _ABS.fullmatch(right):
        if _ABS.fullmatch(right):
            op, right = _FLIP[op], left
        return _absolute([op], [right])
    unknown, bound = (left, right) if _UNKNOWN.fullmatch(left) else (right, left)
    if unknown is right:
        op = _FLIP[op]
    match = _UNKNOWN.fullmatch(unknown)
    value = number_text(bound)
    if match is None or value is None or number_text(unknown) is not None:
        return None
    if match.group(1):  # -x op c  <=>  x flip(op) -c
        op, value = _FLIP[op], number_text(f"-({bound})")
        if value is None:
            return None
    return _interval(op, value)


def _two_sided(kinds: list[str], low: str, unknown: str, high: str) -> Key | None:
    """`a op x op b` (both `<` or both `>`), `a op |x| op b`: an interval or two."""
    if _ABS.fullmatch(unknown):
        if kinds[0] in (">", ">="):
            low, high, kinds = high, low, [_FLIP[kinds[1]], _FLIP[kinds[0]]]
        return _absolute(kinds, [low, high])
    match = _UNKNOWN.fullmatch(unknown)
    if match is None or match.group(1) or number_text(unknown) is not None:
        return None
    if kinds[0] in (">", ">=") and kinds[1] in (">", ">="):
        low, high, kinds = high, low, [_FLIP[kinds[1]], _FLIP[kinds[0]]]
    if kinds[0] not in ("<", "<=") or kinds[1] not in ("<", "<="):
        return None
    a, b = number_text(low), number_text(high)
    if a is None or b is None:
        return None
    left = "(" if kinds[0] == "<" else "["
    return Key("seq", left + f"{a},{b}" + (")" if kinds[1] == "<" else "]"))


def _inequality(text: str) -> Key | None:
    """The solution set of one- or two-sided inequality, else None."""
    ops = list(_RELATION.finditer(text))
    if not 1 <= len(ops) <= 2:
        return None
    kinds = []
    for op in ops:
        kind = _REL_KIND.get(op.group(0))
        if kind is None:
            return None
        kinds.append(kind)
    cuts = [0] + [x for op in ops for x in (op.start(), op.end())] + [len(text)]
    parts = [text[cuts[i] : cuts[i + 1]].strip() for i in range(0, len(cuts), 2)]
    if len(parts) == 2:
        return _one_sided(kinds[0], *parts)
    return _two_sided(kinds, *parts)


def inequality_key(cleaned: str) -> Key | None:
    """The solution set of an inequality, or of a union of them joined by `or`, else None."""
    if not _RELATION.search(cleaned):
        return None
    key = _inequality(cleaned)
    if key is not None:
        return key
    parts = _OR.split(cleaned)
    if len(parts) < 2:
        return None
    keys = [_inequality(part.strip()) for part in parts]
    seqs = [key.text for key in keys if key is not None and key.kind == "seq"]
    return union_key(seqs) if len(seqs) == len(keys) else None
