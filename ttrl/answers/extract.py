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

Boxes are read by `boxes.py`, statements (their math, else their words) by `statements.py`.
Every scan is linear.
"""

import re

from ttrl.answers.boxes import box_answer, boxes
from ttrl.answers.statements import (
    bare_answer,
    math_spans,
    sentence,
    statement_answer,
    states_a_value,
    tidy,
)

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


def _short_answer(stripped: str) -> str | None:
    """A short text without any marker: one line (a reference answer), though display math
    may span lines; a multi-line text without any marker is a rollout that never stated an
    answer."""
    spans = math_spans(stripped)
    ends = [0] + [end for _, end, _ in spans]
    starts = [start for start, _, _ in spans] + [len(stripped)]
    outside = "".join(stripped[a:b] for a, b in zip(ends, starts, strict=True))
    if "\n" in outside:
        return None
    if spans:
        return statement_answer(stripped)
    return bare_answer(stripped)


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
    found = boxes(scope)
    final = _last(_FINAL, scope)
    if found:
        boxed = box_answer(scope, found)[1]
        if final is None or final.start() < found[-1][1]:
            return tidy(boxed) if boxed and tidy(boxed) else None
    if final is not None:
        answer = statement_answer(sentence(scope, final.end()))
        if answer:
            return answer
    gsm8k = _GSM8K.search(scope)
    if gsm8k:
        answer = tidy(gsm8k.group(1))
        if answer:
            return answer
    phrase = _last(_PHRASE, scope)
    if phrase is not None:
        answer = statement_answer(sentence(scope, phrase.end()))
        if answer:
            return answer
    tail_start = max(0, len(scope.rstrip()) - _CONCLUSION_WINDOW)
    conclusion = _last(_CONCLUSION, scope[tail_start:])
    if conclusion is not None:
        concluded = sentence(scope, tail_start + conclusion.end())
        if states_a_value(concluded):
            answer = statement_answer(concluded)
            if answer:
                return answer
    stripped = scope.strip()
    return _short_answer(stripped) if len(stripped) <= _SHORT else None
