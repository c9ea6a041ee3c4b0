"""What may be enqueued: :class:`NewProblem` and the storage rules every problem meets.

Pure checks, the same on SQLite and PostgreSQL; ``ttrl.intake`` applies them to problem
files before :func:`ttrl.db.queue.enqueue` does to what it is given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_NAME_CHARS = 255  # external_id and batch are VARCHAR(255)
INT32 = (-(2**31), 2**31 - 1)  # priority and passes are 32-bit INTEGER columns
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidProblem(ValueError):
    """A problem that cannot be stored as given; the message names it and the field."""


@dataclass(frozen=True)
class NewProblem:
    """A problem to enqueue, as validated by ``ttrl.intake``."""

    prompt: str
    external_id: str | None = None
    reference_answer: str | None = None
    batch: str = "default"
    passes: int = 1
    priority: int = 0
    meta: dict[str, Any] | None = None
    fixed_passes: bool = False


def text_defect(text: str) -> str | None:
    """Why ``text`` cannot be stored exactly on both databases, or None.

    PostgreSQL text cannot hold NUL; a lone UTF-16 surrogate (from a JSON escape such as
    ``\\ud800``) is not Unicode and encodes to UTF-8 on neither database.
    """
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store; remove it"
    if not text.isascii() and (bad := _SURROGATE.search(text)):
        return (
            f"contains a lone UTF-16 surrogate (\\u{ord(bad.group()):04x}) at character "
            f"{bad.start() + 1}, which is not valid Unicode; fix the escape or the encoder"
        )
    return None


def problem_defect(p: NewProblem) -> str | None:
    """Why ``p`` cannot be enqueued, or None: the same rules on SQLite and PostgreSQL.

    Field names are those of problem files (``id`` is ``external_id``).
    """
    if not isinstance(p.prompt, str) or not p.prompt.strip():
        return "missing prompt (a non-empty string is required)"
    texts = (
        ("prompt", p.prompt),
        ("id", p.external_id),
        ("reference_answer", p.reference_answer),
        ("batch", p.batch),
    )
    for name, value in texts:
        if value is None and name in ("id", "reference_answer"):
            continue
        if not isinstance(value, str):
            return f"field {name!r} must be a string, not {type(value).__name__}"
        if reason := text_defect(value):
            return f"prompt {reason}" if name == "prompt" else f"field {name!r} {reason}"
        if name in ("id", "batch") and len(value) > MAX_NAME_CHARS:
            return f"field {name!r} has {len(value)} characters, over {MAX_NAME_CHARS}"
    numbers = (("passes", p.passes), ("priority", p.priority))
    for name, number in numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            return f"field {name!r} must be an integer, not {type(number).__name__}"
    if p.passes < 1:
        return f"field 'passes' must be >= 1, got {p.passes}"
    if not isinstance(p.fixed_passes, bool):
        return f"field 'fixed_passes' must be true or false, not {type(p.fixed_passes).__name__}"
    for name, number in numbers:
        if not INT32[0] <= number <= INT32[1]:
            return f"field {name!r} is {number}, outside the 32-bit integer range"
    return _meta_defect(p.meta)


def _meta_defect(meta: Any) -> str | None:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        return f"field 'meta' must be a JSON object, not {type(meta).__name__}"
    try:
        json.dumps(meta, allow_nan=False)
    except ValueError as exc:
        return f"field 'meta' is not storable JSON ({exc}); NaN and Infinity have no JSON form"
    except TypeError as exc:
        return f"field 'meta' is not JSON: {exc}"
    except RecursionError:
        return "field 'meta' is nested too deeply"
    return None
