"""Find the final answer in a completion.

Order (first that applies wins): the last `\\boxed{...}` / `\\fbox{...}`; the last GSM8K
`#### ...` line; the last "final answer is ..." / "answer is ..." / "answer: ..." line.
A last box whose braces never close means the completion was cut off: no answer.
"""

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_GSM8K = re.compile(r"####[ \t]*([^\n]*)")
_PHRASE = re.compile(r"\banswer(?:[ \t]+is[ \t]*:?|[ \t]*:)[ \t]*([^\n]*)", re.IGNORECASE)
# An inline math span in a fallback line: the answer is the math, not the words around it.
_DOLLAR_SPAN = re.compile(r"\$\$?([^$]+)\$\$?")
_BRACKETED_SPANS = (("\\(", "\\)"), ("\\[", "\\]"))


def _balanced_group(text: str, start: int) -> int | None:
    """Index just past the brace group opening at text[start] == '{', or None if unclosed.

    Escaped braces (`\\{`, `\\}`) are literal characters in LaTeX and do not count.
    """
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _last_box(text: str) -> tuple[bool, str | None]:
    """(found a box command, its content or None when its braces never close)."""
    pos = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if pos < 0:
        return False, None
    i = pos + (len("\\boxed") if text.startswith("\\boxed", pos) else len("\\fbox"))
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        end = _balanced_group(text, i)
        return True, None if end is None else text[i + 1 : end - 1]
    # `\boxed 5`: TeX takes the next token as the argument.
    match = re.match(r"[^\s$]+", text[i:])
    return True, match.group(0) if match else None


def _math_span(line: str) -> str | None:
    """Content of the first inline math span (`$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`).

    Linear time: a lazy regex for `\\(.+?\\)` rescans to the end of the line from every
    unclosed `\\(`, which is quadratic on a line of them. Only the first opener of a kind
    can start its match: a closer after a later opener also follows the first one.
    """
    spans: list[tuple[int, str]] = []
    dollar = _DOLLAR_SPAN.search(line)
    if dollar:
        spans.append((dollar.start(), dollar.group(1)))
    for left, right in _BRACKETED_SPANS:
        start = line.find(left)
        # The content is at least one character, as in `.+?`.
        end = line.find(right, start + len(left) + 1) if start >= 0 else -1
        if end >= 0:
            spans.append((start, line[start + len(left) : end]))
    return min(spans)[1] if spans else None


def _tidy(line: str) -> str:
    """The answer part of a fallback line: its math span if any, minus decoration."""
    math = _math_span(line)
    if math is not None:
        line = math
    line = line.strip().strip("*").strip()
    return line.rstrip(".").strip()


def extract(text: str | None) -> str | None:
    """Final answer of a completion, or None when it has none (or a box never closes).

    >>> extract(r"so $x=\\frac{1}{2}$, thus \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract("The final answer is 42.")
    '42'
    """
    if not text:
        return None
    found, boxed = _last_box(text)
    if found:
        boxed = boxed.strip() if boxed is not None else None
        return boxed or None
    for pattern in (_GSM8K, _PHRASE):
        last = None
        for last in pattern.finditer(text):  # noqa: B007 - the last match is the answer
            pass
        if last is not None:
            answer = _tidy(last.group(1))
            if answer:
                return answer
    return None
