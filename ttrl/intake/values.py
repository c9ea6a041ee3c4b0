"""Values of a record, read strictly, and how errors name them.

JSON is parsed without NaN/Infinity or repeated keys, with bounded numbers and nesting; a
float keeps its literal (``1.50`` stays ``1.50`` as a reference answer). Every problem is
an :class:`InvalidRecord` whose message says what to fix.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any


class InvalidRecord(ValueError):
    """One record is unusable; the message says why."""


_JSON_KINDS = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


def kind(value: Any) -> str:
    """The JSON name of a value's type (``integer``, ``array`` ...)."""
    return next((name for t, name in _JSON_KINDS if isinstance(value, t)), type(value).__name__)


def clip(text: str, limit: int = 40) -> str:
    """``repr(text)``, shortened for an error message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


class _Number(float):
    """A JSON float that remembers its literal, so ``"reference_answer": 1.50`` stays 1.50."""

    literal: str

    def __new__(cls, literal: str) -> _Number:
        number = super().__new__(cls, literal)
        if not math.isfinite(number):
            raise InvalidRecord(f"number {literal} is out of the floating-point range")
        number.literal = literal
        return number


def _json_int(literal: str) -> int:
    limit = sys.get_int_max_str_digits()
    if limit and len(literal.lstrip("-")) > limit:
        raise InvalidRecord(
            f"a number has {len(literal.lstrip('-'))} digits, over {limit}; write it as a string"
        )
    return int(literal)


def _json_constant(name: str) -> float:
    raise InvalidRecord(f"{name} is not a JSON value; write it as a string or a number")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidRecord(f"key {clip(key)} appears twice in one object; keep one")
        obj[key] = value
    return obj


def loads(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no repeated keys, bounded numbers and nesting."""
    try:
        return json.loads(
            text,
            parse_float=_Number,
            parse_int=_json_int,
            parse_constant=_json_constant,
            object_pairs_hook=_json_object,
        )
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Invalid control character"):
            char = text[exc.pos] if exc.pos < len(text) else ""
            raise InvalidRecord(
                f"raw control character {char!r} inside a string at column {exc.colno}; "
                "escape it (e.g. \\t, \\u0001) or remove it"
            ) from None
        if not text[exc.pos :].strip():
            raise InvalidRecord(
                f"malformed JSON: {exc.msg} at the end of the line; a closing bracket, brace "
                "or quote is missing"
            ) from None
        raise InvalidRecord(f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise InvalidRecord("JSON nested too deeply") from None
