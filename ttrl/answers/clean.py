"""LaTeX clean-up of a final answer: the spelling variants graders ignore, removed.

Pure string work with linear-time regexes, so it is safe on hostile input of any size.
What is dropped, and why it is safe for competition answers:
- math delimiters, `\\left`/`\\right`, spacing macros, `\\displaystyle`: layout only;
- `\\dfrac`/`\\tfrac` -> `\\frac`: same value;
- degrees, `\\%`, `\\$`, trailing unit words / `\\text{unit}`: the question fixes the unit,
  so "50\\%" and "50" (or "10 dollars" and "10") answer it the same way;
- a leading `x =` / `x \\in`: "x = 3" answers "find x" like "3" does;
- thousands separators (`1,000`, `1{,}000`, `1\\,000`): a whole answer like `1,234` is read
  as one number, never as the list {1, 234}.
"""

import re

_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u221a": "\\sqrt ",
    "\u00b0": "",  # degree sign
}
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_FRAC = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_BINOM = re.compile(r"\\[dt]binom(?![A-Za-z])")
_SIZING = re.compile(r"\\(?:left|right|displaystyle|[bB]igg?[lr]?)(?![A-Za-z])")
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad(?![A-Za-z])|~")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degrees?(?![A-Za-z])")
_PERCENT = re.compile(r"\\?%")
_DOLLAR = re.compile(r"\\?\$")
_TEXT_CMD = r"\\(?:text|textrm|textbf|textit|mbox|mathrm|mathbf|mathit|boldsymbol|operatorname)"
# A trailing unit in a text command, after some math: `10\text{ cm}`, `5\mbox{ m}^2`.
_TEXT_UNIT = re.compile(_TEXT_CMD + r"\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?\d\}?)?\s*$")
_TEXT_WRAP = re.compile(_TEXT_CMD + r"\s*\{([^{}]*)\}")
# Trailing unit words after a number or a closed group: "10 dollars", "3 sq units".
_WORD_UNIT = re.compile(r"(?<=[\d}).])\s+([A-Za-z]{2,}(?:[ -][A-Za-z]+)*)(?:\^\{?\d\}?)?\s*$")
_NOT_UNITS = frozenset({"pi", "i", "e"})
_ASSIGNMENT = re.compile(r"^\\?[A-Za-z]{1,8}(?:_\{?[A-Za-z0-9]{1,4}\}?)?\s*(?:=|\\in(?![A-Za-z]))")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACE_NOT_BETWEEN_LETTERS = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z])")


def _strip_delimiters(s: str) -> str:
    changed = True
    while changed:
        changed = False
        s = s.strip()
        for left, right in _DELIMITERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
                changed = True
                break
    return s


def _strip_units(s: str) -> str:
    head = _TEXT_UNIT.sub("", s)
    if head.strip() and head != s and re.search(r"[\d}]\s*$", head):
        s = head
    words = _WORD_UNIT.search(s)
    if words and words.group(1).lower() not in _NOT_UNITS:
        s = s[: words.start()]
    return s


def _strip_assignment(s: str) -> str:
    match = _ASSIGNMENT.match(s)
    if match:
        rest = s[match.end() :]
        if rest.strip() and "=" not in rest:
            return rest
    return s


def clean(answer: str) -> str:
    """The answer with layout, units and equivalent LaTeX spellings normalised away.

    >>> clean(r"$x = \\dfrac{1}{2}\\,\\text{cm}$")
    '\\\\frac{1}{2}'
    """
    s = answer
    for char, repl in _UNICODE.items():
        if char in s:
            s = s.replace(char, repl)
    s = _strip_delimiters(s)
    s = _FRAC.sub(r"\\frac", s)
    s = _BINOM.sub(r"\\binom", s)
    s = _SIZING.sub("", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = _PERCENT.sub("", s)
    s = _DOLLAR.sub("", s)
    s = s.replace("{,}", "")
    s = _strip_units(s)
    # Unwrap the remaining text commands; bounded passes handle nesting like \textbf{\text{B}}.
    for _ in range(4):
        unwrapped = _TEXT_WRAP.sub(r"\1", s)
        if unwrapped == s:
            break
        s = unwrapped
    s = _strip_assignment(s.strip())
    s = _strip_units(s)
    s = re.sub(r"\s+", " ", s).strip()
    s = _SPACE_NOT_BETWEEN_LETTERS.sub("", s)
    s = s.rstrip(".,;").strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s
