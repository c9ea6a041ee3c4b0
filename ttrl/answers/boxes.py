r"""`\boxed{...}` answers: the last boxes of a text, and the ones just before that go with them.

Boxes separated only by connectors (`\boxed{1}, \boxed{2}`, `x=\boxed{1} \text{ and }
y=\boxed{2}`, `\boxed{1} papers and \boxed{2}`) are one answer, joined with commas; a box
that never closes has no answer. Every scan is linear.
"""

import re

Box = tuple[int, int, str | None]  # (start, end, content; None when it never closes)

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_MAX_BOXES = 64  # only the last boxes can form the answer; bounds work on hostile input
_CONNECTOR = re.compile(
    r"\\text\{[^{}$]{0,40}\}|\\(?:q?quad|[,;:! ]|\\|hline)(?![A-Za-z])"
    r"|\$|\\[()\[\]]|\b(?:and|or)\b|[\s,;&~]"
)
_UNIT_GAP = re.compile(r"[ \t]*([A-Za-z]{3,12})[ \t]*(?:,|\band\b)[ \t]*")
_NOT_A_UNIT = frozenset({"not", "wait", "nope", "actually", "rather", "sorry", "oops", "but"})
_GAP_ASSIGNMENT = re.compile(r"\\?[A-Za-z]{1,6}(?:_\{?[A-Za-z0-9]{1,4}\}?)?\s*=\s*$")


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


def boxes(text: str) -> list[Box]:
    """(start, end, content or None when unclosed) of the last top-level boxes, in order."""
    starts = [m for m in _BOX.finditer(text)][-_MAX_BOXES:]
    out: list[Box] = []
    covered = -1
    for match in starts:
        if match.start() < covered:
            continue  # a box inside a box: part of the outer one
        i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            end = _balanced_group(text, i)
            if end is None:
                out.append((match.start(), len(text), None))
                break  # everything after an unclosed box is inside it
            out.append((match.start(), end, text[i + 1 : end - 1].strip()))
            covered = end
        else:
            # `\boxed 5`: TeX takes the next token as the argument.
            token = re.match(r"[^\s$}]+", text[i:])
            end = i + (token.end() if token else 0)
            out.append((match.start(), end, token.group(0) if token else None))
            covered = end
    return out


def is_connector(gap: str) -> bool:
    """Whether ``gap`` only joins two answers (`, `, ` and `, `\\quad`, `$ $`)."""
    return not _CONNECTOR.sub("", gap) and "\n\n" not in gap and len(gap) <= 80


def _is_box_gap(gap: str) -> bool:
    """Only connectors, or a unit word and a connector (`\\boxed{1} papers and \\boxed{2}`)."""
    if is_connector(gap):
        return True
    unit = _UNIT_GAP.fullmatch(gap)
    return unit is not None and unit.group(1).lower() not in _NOT_A_UNIT


def box_answer(text: str, found: list[Box]) -> tuple[int, str | None]:
    """(position, answer) of the last box group: boxes joined by connectors are one answer."""
    start, _, content = found[-1]
    if content is None:
        return start, None
    group = [content]
    prefix = _GAP_ASSIGNMENT.search(text[max(0, start - 20) : start])
    prefixes = [prefix.group(0) if prefix else ""]
    for prev_start, prev_end, prev_content in reversed(found[:-1]):
        gap = text[prev_end:start]
        assignment = _GAP_ASSIGNMENT.search(gap)
        if assignment:
            gap = gap[: assignment.start()]
        if prev_content is None or not _is_box_gap(gap):
            break
        group.append(prev_content)
        before = _GAP_ASSIGNMENT.search(text[max(0, prev_start - 20) : prev_start])
        prefixes.append(before.group(0) if before else "")
        start = prev_start
    group.reverse()
    prefixes.reverse()
    if len(group) == 1 or len(set(group)) == 1:
        return found[-1][0], group[0] or None
    named = all(prefixes) and len(set(prefixes)) == len(prefixes)
    parts = [p + c if named and "=" not in c else c for p, c in zip(prefixes, group, strict=True)]
    return found[-1][0], ", ".join(parts)
