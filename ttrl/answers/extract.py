r"""Find the final answer in a completion, the way real models write it.

What is searched (in this order):
1. reasoning: with a `</think>` only the text after the last one counts (boxes inside the
   thinking are drafts); a `<think>` that never closes means the completion was cut off
   while thinking: no answer;
2. the end of the turn: anything from a chat-template marker (`<|im_start|>`, `<|eot_id|>`,
   `</s>`, ...) or a next few-shot question (`\n\nQuestion:`, `\nProblem:`, `\nQ:`) on is
   cut: that is the model writing the next prompt, not answering this one;
3. the last `\boxed{...}` / `\fbox{...}`, together with the boxes just before it when only
   connectors separate them (`\boxed{1}, \boxed{2}`, `x=\boxed{1} \text{ and } y=\boxed{2}`):
   they are one answer, joined with commas; a last box that never closes: no answer;
   a "final answer is ..." statement written after the last box wins over it (Minerva /
   Llama: "Final Answer: The final answer is $10,455$. I hope it is correct.");
4. else the first GSM8K `#### ...` line (a base model goes on with the next question);
5. else the last "answer is ..." / "answer: ..." / "**Answer:** ..." statement;
6. else the last concluding sentence near the end ("Therefore, ... is $(7, 6)$.");
7. else a short text that is only an answer (`$28\%$`, `x \in [-2,7]`, `12000023`).

A statement's answer is its math (`$...$`, `\(...\)`, `\[...\]`) when it has some, else the
words after its last " is ", else the last number of a sentence of words ("Jane started
Sphere 3 hours ago." -> `3`), else the words themselves ("Evelyn"). Every scan is linear.
"""

import re
from itertools import pairwise

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_MAX_BOXES = 64  # only the last boxes can form the answer; bounds work on hostile input
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_END_OF_TURN = re.compile(
    r"<\|(?:im_start|im_end|endoftext|eot_id|end|user|assistant|start_header_id)\|>"
    r"|</s>|<\uff5c(?:end\u2581of\u2581sentence|User|Assistant)\uff5c>"
)
_NEXT_QUESTION = re.compile(r"\n[ \t]*(?:Question|Problem|Q)[ \t]*\d*[ \t]*:")
_GSM8K = re.compile(r"####[ \t]*([^\n]*)")
_FINAL = re.compile(
    r"final[ \t]+answer(?:[ \t]*\*\*)?(?:[ \t]*(?:is\b|:|=)|[ \t]*\n)", re.IGNORECASE
)
_PHRASE = re.compile(
    r"\banswer(?:[ \t]*\*\*)?(?:[ \t]+is\b[ \t]*:?|[ \t]*:|[ \t]*=)", re.IGNORECASE
)
_CONCLUSION = re.compile(
    r"(?:^|(?<=[\s.!?:$*]))(?:Therefore|Thus|Hence|So|In conclusion|Finally|Consequently)\b"
    r"[ \t,:]*"
)
_CONCLUSION_WINDOW = 600  # a concluding sentence must start this close to the end
_SHORT = 160  # a text this short without a marker may be the answer itself
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
_CONNECTOR = re.compile(
    r"\\text\{[^{}$]{0,40}\}|\\(?:q?quad|[,;:! ]|\\|hline)(?![A-Za-z])"
    r"|\$|\\[()\[\]]|\b(?:and|or)\b|[\s,;&~]"
)
_UNIT_GAP = re.compile(r"[ \t]*([A-Za-z]{3,12})[ \t]*(?:,|\band\b)[ \t]*")
_NOT_A_UNIT = frozenset({"not", "wait", "nope", "actually", "rather", "sorry", "oops", "but"})
_GAP_ASSIGNMENT = re.compile(r"\\?[A-Za-z]{1,6}(?:_\{?[A-Za-z0-9]{1,4}\}?)?\s*=\s*$")
_WORDY = re.compile(r"[A-Za-z]{3,}")
_ANSWER_PHRASE = re.compile(
    r"(?i)(no (real )?solutions?|infinitely many( solutions)?|does not exist|undefined)\.?$"
)


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


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, content or None when unclosed) of the last top-level boxes, in order."""
    starts = [m for m in _BOX.finditer(text)][-_MAX_BOXES:]
    out: list[tuple[int, int, str | None]] = []
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


def _is_connector(gap: str) -> bool:
    return not _CONNECTOR.sub("", gap) and "\n\n" not in gap and len(gap) <= 80


def _is_box_gap(gap: str) -> bool:
    """Only connectors, or a unit word and a connector (`\\boxed{1} papers and \\boxed{2}`)."""
    if _is_connector(gap):
        return True
    unit = _UNIT_GAP.fullmatch(gap)
    return unit is not None and unit.group(1).lower() not in _NOT_A_UNIT


def _box_answer(text: str, boxes: list[tuple[int, int, str | None]]) -> tuple[int, str | None]:
    """(position, answer) of the last box group: boxes joined by connectors are one answer."""
    start, _, content = boxes[-1]
    if content is None:
        return start, None
    group = [content]
    prefix = _GAP_ASSIGNMENT.search(text[max(0, start - 20) : start])
    prefixes = [prefix.group(0) if prefix else ""]
    for prev_start, prev_end, prev_content in reversed(boxes[:-1]):
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
        return boxes[-1][0], group[0] or None
    named = all(prefixes) and len(set(prefixes)) == len(prefixes)
    parts = [p + c if named and "=" not in c else c for p, c in zip(prefixes, group, strict=True)]
    return boxes[-1][0], ", ".join(parts)


def _math_spans(text: str) -> list[tuple[int, int, str]]:
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


def _sentence(text: str, start: int) -> str:
    """From `start` to the end of its sentence: a line break, or a period (outside math,
    not a decimal point) followed by a space and a capital letter / the end."""
    end = len(text)
    spans = _math_spans(text[start : start + 2000])
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


def _tidy(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    answer = re.sub(r"[\s.,;:!]+$", "", answer)
    return answer.strip("*").strip()


def _statement_answer(statement: str) -> str | None:
    """The answer stated in one sentence (after its marker), see the module docstring."""
    statement = _HOPE.sub("", statement)
    statement = _LEAD.sub("", statement.strip())
    statement = _IS_ANSWER_SUFFIX.sub("", statement)
    boxes = _boxes(statement)
    if boxes:
        return _tidy(_box_answer(statement, boxes)[1] or "") or None
    spans = _math_spans(statement)
    if not spans:
        is_at = list(_IS.finditer(statement))
        if is_at:
            statement = statement[is_at[-1].end() :]
        statement = _tidy(statement)
        words = _WORDY.findall(statement)
        numbers = list(_NUMBER.finditer(statement))
        if words and numbers and len(words) > 1:
            return _tidy(numbers[-1].group(0))
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
            return _statement_answer(statement[cut:]) if statement[cut:].strip() else None
        spans = after
    if len(spans) == 1:
        return _tidy(spans[0][2]) or None
    between = [outside[a[1] : b[0]] for a, b in pairwise(spans)]
    if all(_is_connector(gap) for gap in between):
        return ", ".join(_tidy(sp[2]) for sp in spans if _tidy(sp[2])) or None
    return _tidy(spans[-1][2]) or None


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - the last match is wanted
        pass
    return last


def _scope(text: str) -> str | None:
    """The part of a completion that can hold its final answer (None: cut off thinking)."""
    close = text.rfind(_THINK_CLOSE)
    if close >= 0:
        text = text[close + len(_THINK_CLOSE) :]
    elif _THINK_OPEN in text:
        return None
    turn = _END_OF_TURN.search(text)
    if turn:
        text = text[: turn.start()]
    question = _NEXT_QUESTION.search(text)
    if question and text[: question.start()].strip():
        text = text[: question.start()]
    return text


def extract(text: str | None) -> str | None:
    r"""Final answer of a completion, or None when it has none (or was cut off).

    >>> extract(r"so $x=\frac{1}{2}$, thus \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract("Final Answer: The final answer is $7.78$. I hope it is correct.")
    '7.78'
    """
    if not text:
        return None
    scope = _scope(text)
    if scope is None or not scope.strip():
        return None
    boxes = _boxes(scope)
    final = _last(_FINAL, scope)
    if boxes:
        boxed = _box_answer(scope, boxes)[1]
        if final is None or final.start() < boxes[-1][1]:
            return _tidy(boxed) if boxed and _tidy(boxed) else None
    if final is not None:
        answer = _statement_answer(_sentence(scope, final.end()))
        if answer:
            return answer
    gsm8k = _GSM8K.search(scope)
    if gsm8k:
        answer = _tidy(gsm8k.group(1))
        if answer:
            return answer
    phrase = _last(_PHRASE, scope)
    if phrase is not None:
        answer = _statement_answer(_sentence(scope, phrase.end()))
        if answer:
            return answer
    tail_start = max(0, len(scope.rstrip()) - _CONCLUSION_WINDOW)
    conclusion = _last(_CONCLUSION, scope[tail_start:])
    if conclusion is not None:
        sentence = _sentence(scope, tail_start + conclusion.end())
        if _math_spans(sentence) or _NUMBER.search(sentence):
            answer = _statement_answer(sentence)
            if answer:
                return answer
    stripped = scope.strip()
    if len(stripped) <= _SHORT:
        # One line (a reference answer), though display math may span lines; a multi-line
        # text without any marker is a rollout that never stated an answer.
        spans = _math_spans(stripped)
        ends = [0] + [end for _, end, _ in spans]
        starts = [start for start, _, _ in spans] + [len(stripped)]
        outside = "".join(stripped[a:b] for a, b in zip(ends, starts, strict=True))
        if "\n" in outside:
            return None
        if spans:
            return _statement_answer(stripped)
        return _bare_answer(stripped)
    return None


def _bare_answer(text: str) -> str | None:
    """A short unmarked text that is only an answer (`28 percent`, `x \\in [-2,7]`, `Evelyn`)."""
    words = _WORDY.findall(text)
    if "answer" in text.lower():
        return None
    if len(words) > 1 and _IS.search(text) and re.search(r"\d", text):
        return _statement_answer(text)  # "the number is not 10 which is 1,000.99"
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
        return _tidy(text) or None
    return None
