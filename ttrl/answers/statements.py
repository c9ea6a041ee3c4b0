r"""Answers stated in words: "The answer is $7$.", "Therefore, ... is $(7, 6)$.", `28\%`.

A statement's answer is its math (`$...$`, `\(...\)`, `\[...\]`) when it has some, else the
words after its last " is ", else the last number of a sentence of words ("Jane started
Sphere 3 hours ago." -> `3`), else the words themselves ("Evelyn"). Every scan is linear.
"""

import re
from itertools import pairwise

from ttrl.answers.boxes import box_answer, boxes, is_connector

_HOPE = re.compile(r"\bI hope (?:it|this|that) is correct\b.*", re.IGNORECASE | re.DOTALL)
_LEAD = re.compile(
    r"^(?:[ \t*:=]|the[ \t]+final[ \t]+answer[ \t]+is\b|the[ \t]+answer[ \t]+is\b|is\b)+",
    re.IGNORECASE,
)
_IS_ANSWER_SUFFIX = re.compile(
    r"\s+(?:is|are|gives?|would be)\s+(?:the|our|my)\s+(?:final\s+|correct\s+)?"
    r"(?:answer|solution|result)s?\b.*$",
    re.IGNORECASE | re.DOTALL,
)
_IS = re.compile(r"\s(?:is|are|equals|was|be|it's)\s", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*(?:%|percent\b))?")
_WORDY = re.compile(r"[A-Za-z]{3,}")
_ANSWER_PHRASE = re.compile(
    r"(?i)(no (real )?solutions?|infinitely many( solutions)?|does not exist|undefined)\.?$"
)


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of the math spans `$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`.

    Linear: each closer is looked up once per opener kind and reused while it lies ahead;
    inline spans (`$`, `\\(`) do not cross a line break, as in LaTeX.
    """
    spans: list[tuple[int, int, str]] = []
    closer_at: dict[str, int] = {}
    n = len(text)
    i = 0

    def find(closer: str, start: int) -> int:
        pos = closer_at.get(closer, -2)
        if pos == -1 or (pos >= start):
            return pos
        pos = start
        while True:
            pos = text.find(closer, pos)
            if pos <= 0 or closer != "$" or text[pos - 1] != "\\":
                break
            pos += 1
        closer_at[closer] = pos
        return pos

    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            kind = text[i + 1]
            if kind in "[(":
                closer = "\\]" if kind == "[" else "\\)"
                j = find(closer, i + 2)
                if j >= 0 and (kind == "[" or "\n" not in text[i + 2 : j]):
                    spans.append((i, j + 2, text[i + 2 : j]))
                    i = j + 2
                    continue
            i += 2
            continue
        if ch == "$":
            if text.startswith("$$", i):
                j = find("$$", i + 2)
                if j >= 0:
                    spans.append((i, j + 2, text[i + 2 : j]))
                    i = j + 2
                    continue
                i += 2
                continue
            j = find("$", i + 1)
            if j > i + 1 and "\n" not in text[i + 1 : j]:
                spans.append((i, j + 1, text[i + 1 : j]))
                i = j + 1
                continue
        i += 1
    return spans


def sentence(text: str, start: int) -> str:
    """From `start` to the end of its sentence: a line break, or a period (outside math,
    not a decimal point) followed by a space and a capital letter / the end."""
    end = len(text)
    spans = math_spans(text[start : start + 2000])
    in_math = [(s + start, e + start) for s, e, _ in spans]
    k = 0
    i = start
    limit = min(end, start + 2000)
    while i < limit:
        while k < len(in_math) and in_math[k][1] <= i:
            k += 1
        if k < len(in_math) and in_math[k][0] <= i < in_math[k][1]:
            i = in_math[k][1]
            continue
        ch = text[i]
        if ch == "\n" and i > start and text[start:i].strip():
            return text[start:i]
        if ch in ".!?" and (i + 1 >= end or text[i + 1] in " \t\n"):
            rest = text[i + 1 : i + 3].lstrip()
            if not rest or rest[0].isupper() or rest[0] in "\n[(*<":
                return text[start:i]
        i += 1
    return text[start:limit]


def tidy(answer: str) -> str:
    """The answer without the spaces, bold markers and end punctuation around it."""
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"[\s.,;:!]+$", "", answer)
    return answer.strip("*").strip()


def statement_answer(statement: str) -> str | None:
    """The answer stated in one sentence (after its marker), see the module docstring."""
    statement = _HOPE.sub("", statement)
    statement = _LEAD.sub("", statement.strip())
    statement = _IS_ANSWER_SUFFIX.sub("", statement)
    found = boxes(statement)
    if found:
        return tidy(box_answer(statement, found)[1] or "") or None
    spans = math_spans(statement)
    if not spans:
        is_at = list(_IS.finditer(statement))
        if is_at:
            statement = statement[is_at[-1].end() :]
        statement = tidy(statement)
        words = _WORDY.findall(statement)
        numbers = list(_NUMBER.finditer(statement))
        if words and numbers and len(words) > 1:
            return tidy(numbers[-1].group(0))
        return statement or None
    # Math present: the math after the last " is " outside math, else all of it.
    outside = statement
    for s, e, _ in reversed(spans):
        outside = outside[:s] + " " * (e - s) + outside[e:]
    is_at = list(_IS.finditer(outside))
    if is_at:
        cut = is_at[-1].end()
        after = [sp for sp in spans if sp[0] >= cut]
        if not after:
            return statement_answer(statement[cut:]) if statement[cut:].strip() else None
        spans = after
    if len(spans) == 1:
        return tidy(spans[0][2]) or None
    between = [outside[a[1] : b[0]] for a, b in pairwise(spans)]
    if all(is_connector(gap) for gap in between):
        return ", ".join(tidy(sp[2]) for sp in spans if tidy(sp[2])) or None
    return tidy(spans[-1][2]) or None


def bare_answer(text: str) -> str | None:
    """A short unmarked text that is only an answer (`28 percent`, `x \\in [-2,7]`, `Evelyn`)."""
    words = _WORDY.findall(text)
    if "answer" in text.lower():
        return None
    if len(words) > 1 and _IS.search(text) and re.search(r"\d", text):
        return statement_answer(text)  # "the number is not 10 which is 1,000.99"
    if len(words) > 3:
        return None
    starts_as_math = re.match(r"[-+(\[{\\.\d$]", text) is not None
    has_math = re.search(r"[\\=<>^_{}]", text) is not None
    has_digit = re.search(r"\d", text) is not None
    # Words without a number answer alone (`Evelyn`, `B`, `yes`) or as a known answer
    # phrase (`no solution`): "no idea" or "not sure" is no answer, and a vote for it
    # would teach it.
    wordy_answer = len(text.split()) == 1 or _ANSWER_PHRASE.match(text) is not None
    if starts_as_math or (has_math and len(words) <= 1) or (not has_digit and wordy_answer):
        return tidy(text) or None
    return None


def states_a_value(text: str) -> bool:
    """Whether a concluding sentence holds math or a number (else it concludes no answer)."""
    return bool(math_spans(text) or _NUMBER.search(text))
