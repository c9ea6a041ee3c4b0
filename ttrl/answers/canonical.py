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
from fractions import Fraction
from math import gcd
from typing import NamedTuple

from ttrl.answers import metrics
from ttrl.answers.bounded import SymbolicUnavailable, get_config, pool
from ttrl.answers.clean import clean
from ttrl.answers.exact import MAX_DEPTH, Unsupported, exact_value, format_value

EXACT_KINDS = frozenset({"num", "choice", "set", "seq", "union", "matrix", "time", "ratio", "eqs"})
# Kinds a symbolic "expr" may still equal (a letter is a choice, never an expression).
MERGEABLE_KINDS = (EXACT_KINDS - {"choice", "time", "ratio", "eqs"}) | {"expr"}


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


_CHOICE = re.compile(r"(?:(?:[Oo]ption|[Cc]hoice)\s*)?(?:\(([A-E])\).*|([A-E])\)?)")
_MATRIX = re.compile(r"\\begin\{([pbB]?matrix)\}(.*)\\end\{\1\}", re.DOTALL)
_WORDS = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
_INFINITY = {"\\infty": "oo", "+\\infty": "oo", "-\\infty": "-oo"}
_EMPTY_SET = {"\\emptyset", "\\varnothing", "\\{\\}"}
_OPEN, _CLOSE = "([{", ")]}"
# `12:00`, `9:05 a.m.`, `12:00:30`: a clock time (minutes in two digits); `3:2` a ratio.
_TIME = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?((?:a|p)\.?m\.?)?", re.IGNORECASE)
_RATIO = re.compile(r"(\d+):(\d+)")
# Statements that there is nothing: the empty set (`\emptyset` is its symbol).
_NO_SOLUTION = re.compile(
    r"(?:there (?:is|are) )?(?:no (?:real |integer |such )?(?:solutions?|roots?|values?)"
    r"|(?:the )?empty set)",
    re.IGNORECASE,
)
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
# x_1, x_{2}: the roots of one unknown (x, z, t, r, lambda). Not a_1, a_2: sequence terms.
# `1 2`, `11 7/6`: digits a space apart that clean() left (no grouping, no mixed number).
# `1,00,000`, `(1,000)`: digit groups, not the list {1, 0} (elements never start with 0).
_ZERO_GROUP = re.compile(r",\s*0\d|(?:^|[(\[{])0\d+,")
_DIGIT_GAP = re.compile(r"(?<![_^\d])\d+ \d")
# Words: a run of 3+ letters that is no function name, or two words a space apart (`cm by`).
_WORD_RUN = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_WORD_GAP = re.compile(r"(?:^|[^\\A-Za-z])[A-Za-z]{2,} [A-Za-z]")
_LATEX_NAMES = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}(?:\{[A-Za-z|]*\})?|\\[A-Za-z]+")
_KNOWN_NAMES = frozenset(
    [
        "arcsin",
        "arccos",
        "arctan",
        "sinh",
        "cosh",
        "tanh",
        "sin",
        "cos",
        "tan",
        "sec",
        "csc",
        "cot",
        "log",
        "ln",
        "exp",
        "max",
        "min",
        "gcd",
        "lcm",
        "det",
        "mod",
        "sqrt",
        "pmod",
    ]
)
_ROOT_NAME = re.compile(r"^(?:[xzrt]|\\lambda)_\{?[0-9]{1,3}\}?$")
_EQUATION_ITEM = re.compile(r"(\\?[A-Za-z]{1,8}(?:_\{?[A-Za-z0-9]{1,4}\}?)?)=(.+)")


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


def _expand_pm(parts: list[str]) -> list[str]:
    """`1\\pm\\sqrt{5}` -> `1+\\sqrt{5}`, `1-\\sqrt{5}` (a set element or a whole answer)."""
    out = []
    for part in parts:
        pieces = _split_top(part, "\\pm")
        if len(pieces) == 1:
            pieces = _split_top(part, "\\mp")
        if len(pieces) == 2 and pieces[1]:
            left, right = pieces
            out += [f"{left}+({right})" if left else f"({right})", f"{left}-({right})"]
        else:
            out.append(part)
    return out


def _equations(parts: list[str], depth: int) -> Key | None:
    """`x=1, y=2` (any order): one value per distinct unknown, never equal to a bare list."""
    items = [_EQUATION_ITEM.fullmatch(part) for part in parts]
    if any(item is None for item in items):
        return None
    names = [item.group(1) for item in items]  # type: ignore[union-attr]
    values = _elements(_expand_pm([item.group(2) for item in items]), depth)  # type: ignore[union-attr]
    if values is None:
        return None
    roots = all(_ROOT_NAME.match(name) for name in names) and len({n[0] for n in names}) == 1
    if roots or len(set(names)) == 1:
        # `p = -1, p = 15/8` or `x_1 = 2, x_2 = 3`: the values of one unknown, a set.
        return Key("set", "{" + ",".join(sorted(set(values))) + "}")
    if len(set(names)) != len(names) or len(values) != len(names):
        return None
    return Key("eqs", ",".join(sorted(f"{n}={v}" for n, v in zip(names, values, strict=True))))


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
        elements = _elements(_expand_pm(_split_top(text[2:-2], ",")), depth)
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
        equations = _equations(parts, depth)
        if equations is not None:
            return equations
        # A bare list ("1, 2") answers "find all solutions": order does not matter.
        elements = _elements(_expand_pm(parts), depth)
        return None if elements is None else Key("set", "{" + ",".join(sorted(set(elements))) + "}")
    return None


def _bound(text: str) -> str | None:
    if text in _INFINITY:
        return _INFINITY[text]
    try:
        return format_value(exact_value(text))
    except Unsupported:
        return None


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


def _absolute(kinds: list[str], bounds: list[str]) -> Key | None:
    """`|x| \\le 2` -> `[-2,2]`, `1 \\le |z| \\le 3/2` -> `[-3/2,-1] U [1,3/2]` (rational ends)."""
    values = [_rational_bound(b) for b in bounds]
    if any(v is None or v < 0 for v in values):
        return None

    def fmt(q: Fraction) -> str:
        return format_value({(1, 0): q} if q else {})

    if len(kinds) == 1:
        op, b = kinds[0], values[0]
        if op in ("<", "<="):
            close = ")" if op == "<" else "]"
            return Key("seq", ("(" if op == "<" else "[") + f"{fmt(-b)},{fmt(b)}" + close)  # type: ignore[operator,arg-type]
        if op in (">", ">="):
            o, c = ("(", ")") if op == ">" else ("[", "]")
            parts = [f"(-oo,{fmt(-b)}{c}", f"{o}{fmt(b)},oo)"]  # type: ignore[operator,arg-type]
            return Key("union", " U ".join(sorted(parts)))
        return None
    (lo_op, hi_op), (a, b) = kinds, values
    if lo_op not in ("<", "<=") or hi_op not in ("<", "<=") or not a < b:  # type: ignore[operator]
        return None
    o, c = ("(" if lo_op == "<" else "["), (")" if hi_op == "<" else "]")
    rev_o, rev_c = ("(" if hi_op == "<" else "["), (")" if lo_op == "<" else "]")
    parts = [f"{rev_o}{fmt(-b)},{fmt(-a)}{rev_c}", f"{o}{fmt(a)},{fmt(b)}{c}"]  # type: ignore[operator,arg-type]
    return Key("union", " U ".join(sorted(parts)))


def _inequality(text: str) -> Key | None:
    """`x \\le 4` -> `(-oo,4]`, `-2 \\le x < 7` -> `[-2,7)`, `5 \\geq x`, `-x > -1`: the
    solution set, so an inequality and its interval are one answer."""
    ops = list(_RELATION.finditer(text))
    if not 1 <= len(ops) <= 2:
        return None
    kinds = [_REL_KIND.get(op.group(0)) for op in ops]
    if any(kind is None for kind in kinds):
        return None
    cuts = [0] + [x for op in ops for x in (op.start(), op.end())] + [len(text)]
    parts = [text[cuts[i] : cuts[i + 1]].strip() for i in range(0, len(cuts), 2)]
    if len(parts) == 2:
        left, right = parts
        op = kinds[0]
        if _ABS.fullmatch(left) or _ABS.fullmatch(right):
            if _ABS.fullmatch(right):
                op, left = _FLIP[op], right  # type: ignore[index]
                right = parts[0]
            return _absolute([op], [right])  # type: ignore[list-item]
        unknown, bound = (left, right) if _UNKNOWN.fullmatch(left) else (right, left)
        if unknown is right:
            op = _FLIP[op]  # type: ignore[index]
        match = _UNKNOWN.fullmatch(unknown)
        value = _bound(bound)
        if match is None or value is None or _bound(unknown) is not None:
            return None
        if match.group(1):  # -x op c  <=>  x flip(op) -c
            op, value = _FLIP[op], _bound(f"-({bound})")  # type: ignore[index]
            if value is None:
                return None
        return _interval(op, value)  # type: ignore[arg-type]
    low, unknown, high = parts
    if _ABS.fullmatch(unknown):
        if kinds[0] in (">", ">="):
            low, high, kinds = high, low, [_FLIP[kinds[1]], _FLIP[kinds[0]]]  # type: ignore[index]
        return _absolute(kinds, [low, high])  # type: ignore[arg-type]
    if _UNKNOWN.fullmatch(unknown) is None or _UNKNOWN.fullmatch(unknown).group(1):  # type: ignore[union-attr]
        return None
    if _bound(unknown) is not None:
        return None
    if kinds[0] in (">", ">=") and kinds[1] in (">", ">="):
        low, high, kinds = high, low, [_FLIP[kinds[1]], _FLIP[kinds[0]]]
    if kinds[0] not in ("<", "<=") or kinds[1] not in ("<", "<="):
        return None
    a, b = _bound(low), _bound(high)
    if a is None or b is None:
        return None
    left = "(" if kinds[0] == "<" else "["
    return Key("seq", left + f"{a},{b}" + (")" if kinds[1] == "<" else "]"))


def _inequality_union(text: str) -> Key | None:
    """`x < -1 \\text{ or } x > 2` -> `(-oo,-1) U (2,oo)`: a union of interval solution sets."""
    parts = _OR.split(text)
    if len(parts) < 2:
        return None
    keys = [_inequality(part.strip()) for part in parts]
    if any(key is None or key.kind != "seq" for key in keys):
        return None
    return Key("union", " U ".join(sorted(key.text for key in keys)))  # type: ignore[union-attr]


def _clock(text: str) -> Key | None:
    """`12:00` (not `1:00`), `1:00 pm` = `13:00`; other `a:b` are ratios in lowest terms."""
    time = _TIME.fullmatch(text)
    if time:
        hour, minute, second, half = time.groups()
        h = int(hour)
        if h > 24 or (half and not 1 <= h <= 12):
            return None
        if half:
            h = h % 12 + (12 if half[0].lower() == "p" else 0)
        return Key("time", f"{h}:{minute}" + (f":{second}" if second else ""))
    ratio = _RATIO.fullmatch(text)
    if ratio:
        a, b = int(ratio.group(1)), int(ratio.group(2))
        if (a == 0 and b == 0) or len(ratio.group(0)) > 40:
            return None
        g = gcd(a, b)
        return Key("ratio", f"{a // g}:{b // g}")
    return None


def exact_key(cleaned: str) -> Key | None:
    """Tier 1: the exact key of a cleaned answer, or None when it needs sympy."""
    choice = _CHOICE.fullmatch(cleaned)
    if choice:
        return Key("choice", choice.group(1) or choice.group(2))
    if ":" in cleaned:
        clock = _clock(cleaned)
        if clock is not None:
            return clock
    if _NO_SOLUTION.fullmatch(cleaned):
        return Key("set", "{}")
    structure = _structure(cleaned)
    if structure is not None:
        return structure
    if _RELATION.search(cleaned):
        inequality = _inequality(cleaned)
        if inequality is None:
            inequality = _inequality_union(cleaned)
        if inequality is not None:
            return inequality
    if "\\pm" in cleaned or "\\mp" in cleaned:
        both = _expand_pm([cleaned])
        if len(both) == 2:
            elements = _elements(both, 1)
            if elements is not None:
                return Key("set", "{" + ",".join(sorted(set(elements))) + "}")
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
    bare = _LATEX_NAMES.sub(" ", cleaned)
    if _WORD_GAP.search(bare) or any(
        w.group(0) not in _KNOWN_NAMES for w in _WORD_RUN.finditer(bare)
    ):
        # `3 cm by 4 cm` or `1 2`: sympy would read a product of symbols (`12*b*c*m*y`, the
        # key of `6 cm by 2 cm` too) or one number; words and gaps stay text, never merged.
        return Key("text", cleaned)
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
    if form == "degenerate":  # zoo, nan: `12:00` and `1:00` both read as 12/0 and 1/0
        return Key("raw", cleaned)
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
    if _DIGIT_GAP.search(cleaned) or _ZERO_GROUP.search(cleaned) or "\\ldots" in cleaned:
        return Key("text", cleaned)  # `1 2`, `3.14\\ldots`: no value to compare
    return exact_key(cleaned) or _symbolic_key(cleaned)
