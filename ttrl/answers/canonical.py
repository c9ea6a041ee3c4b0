"""`canonical(answer) -> Key`: one hashable key per equivalence class, in the common cases.

Tiers, cheapest first:
1. exact (pure Python, no process hop): numbers and Q(sqrt, pi) arithmetic as exact values
   (`exact.py`), multiple-choice letters, clock times and ratios, inequalities
   (`inequalities.py`), and sets / tuples / intervals / unions / matrices of those
   (`structures.py`). Exact keys are complete: two exact answers are equivalent iff keys
   are equal.
2. symbolic (`bounded.py` worker, time-bounded): math-verify's LaTeX parser and
   `sympy.simplify` (constants) or `expand`; if the result is exact it gets the exact key,
   else an "expr" key that `vote` may still merge with another key through `verify`.
3. fallback: "text" (plain words, or LaTeX sympy cannot read) and "raw" (too long, or the
   symbolic call timed out / failed): the cleaned string itself, never compared further.
"""

import re
from math import gcd

from ttrl.answers import metrics
from ttrl.answers.bounded import SymbolicUnavailable, get_config, pool
from ttrl.answers.clean import FUNCTIONS, clean
from ttrl.answers.inequalities import inequality_key
from ttrl.answers.keys import Key, number_text, set_key
from ttrl.answers.structures import elements, expand_pm, structure

_CHOICE = re.compile(r"(?:(?:[Oo]ption|[Cc]hoice)\s*)?(?:\(([A-E])\).*|([A-E])\)?)")
_WORDS = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
# `12:00`, `9:05 a.m.`, `12:00:30`: a clock time (minutes in two digits); `3:2` a ratio.
_TIME = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?((?:a|p)\.?m\.?)?", re.IGNORECASE)
_RATIO = re.compile(r"(\d+):(\d+)")
# Statements that there is nothing: the empty set (`\emptyset` is its symbol).
_NO_SOLUTION = re.compile(
    r"(?:there (?:is|are) )?(?:no (?:real |integer |such )?(?:solutions?|roots?|values?)"
    r"|(?:the )?empty set)",
    re.IGNORECASE,
)
# `1 2`, `11 7/6`: digits a space apart that clean() left (no grouping, no mixed number).
# `1,00,000`, `(1,000)`: digit groups, not the list {1, 0} (elements never start with 0).
_ZERO_GROUP = re.compile(r",\s*0\d|(?:^|[(\[{])0\d+,")
_DIGIT_GAP = re.compile(r"(?<![_^\d])\d+ \d")
# Words: a run of 3+ letters that is no function name, or two words a space apart (`cm by`).
_WORD_RUN = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_WORD_GAP = re.compile(r"(?:^|[^\\A-Za-z])[A-Za-z]{2,} [A-Za-z]")
_LATEX_NAMES = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}(?:\{[A-Za-z|]*\})?|\\[A-Za-z]+")
_KNOWN_NAMES = frozenset(FUNCTIONS.split("|")) | {"mod", "sqrt", "pmod"}


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
        return set_key([])
    key = structure(cleaned) or inequality_key(cleaned)
    if key is not None:
        return key
    if "\\pm" in cleaned or "\\mp" in cleaned:
        both = expand_pm([cleaned])
        if len(both) == 2:
            values = elements(both, 1)
            if values is not None:
                return set_key(values)
    number = number_text(cleaned)
    return None if number is None else Key("num", number)


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
