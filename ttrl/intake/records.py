"""One decoded record (a JSON object or a CSV row) into a :class:`NewProblem`, field by field.

CSV carries only text and JSONL may quote numbers too, so every field has one rule
whatever carries it; the storage rules are :func:`ttrl.db.queue.problem_defect`'s.
"""

from __future__ import annotations

import math
from typing import Any

from ttrl.config import IntakeConfig
from ttrl.db.queue import NewProblem, problem_defect
from ttrl.intake.values import InvalidRecord, clip, kind, loads

FIELDS = (
    "prompt",
    "id",
    "reference_answer",
    "batch",
    "passes",
    "fixed_passes",
    "priority",
    "meta",
)
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def to_problem(record: dict[str, Any], cfg: IntakeConfig, default_passes: int = 1) -> NewProblem:
    """Validate one decoded record (JSON object or CSV row) into a :class:`NewProblem`.

    The storage rules are :func:`ttrl.db.queue.problem_defect`'s, so a record accepted here
    is stored exactly, the same way on SQLite and PostgreSQL.
    """
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise InvalidRecord(
            f"unknown field(s) {', '.join(map(_shown, unknown))}; known: {', '.join(FIELDS)}"
        )
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRecord("missing prompt (a non-empty string is required)")
    if len(prompt) > cfg.max_prompt_chars:
        raise InvalidRecord(
            f"prompt has {len(prompt)} characters, over the limit of {cfg.max_prompt_chars} "
            "(intake.max_prompt_chars)"
        )
    problem = NewProblem(
        prompt=prompt,
        external_id=_optional_text(record, "id", allow_number=True),
        reference_answer=_optional_text(record, "reference_answer", allow_number=True),
        batch=_optional_text(record, "batch") or cfg.default_batch,
        passes=_int(record, "passes", default_passes),
        fixed_passes=_bool(record, "fixed_passes"),
        priority=_int(record, "priority", 0),
        meta=_meta(record),
    )
    if reason := problem_defect(problem):
        raise InvalidRecord(reason)
    return problem


def _shown(name: str) -> str:
    """A field name as the user should see it: quoted when blank, odd or long."""
    plain = name and name.isprintable() and name.strip() == name and len(name) <= 40
    return name if plain else clip(name)


def _optional_text(record: dict[str, Any], key: str, allow_number: bool = False) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if allow_number and isinstance(value, int | float) and not isinstance(value, bool):
        return getattr(value, "literal", str(value))
    raise InvalidRecord(f"field {key!r} must be a string, not {kind(value)}")


def _bool(record: dict[str, Any], key: str) -> bool:
    """A flag: JSON true/false, or (CSV has only text) true/false, 1/0, yes/no; absent or
    empty is false."""
    value = record.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRecord(f"field {key!r} must be true or false, got {clip(str(value))}")


def _int(record: dict[str, Any], key: str, default: int) -> int:
    """One rule for every integer field, whatever carries it: an integral number (``3``,
    ``3.0``, ``3e0``), written as a JSON number or as text (CSV has only text; JSONL may
    quote it too). ``2.5``, ``"2.5"``, ``true`` and the like are refused the same way."""
    value = record.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRecord(f"field {key!r} must be an integer, not {kind(value)}")
    shown = value if isinstance(value, str) else getattr(value, "literal", str(value))
    number: int | float
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise InvalidRecord(
                    f"field {key!r} must be an integer, got {clip(value)}"
                ) from None
    else:
        number = value
    if isinstance(number, float):
        if not (math.isfinite(number) and number.is_integer()):
            raise InvalidRecord(f"field {key!r} must be an integer, got {clip(str(shown))}")
        number = int(number)
    return number


def _meta(record: dict[str, Any]) -> dict[str, Any] | None:
    value = record.get("meta")
    if value is None or value == "":
        return None
    if isinstance(value, str):  # CSV carries meta as a JSON string
        try:
            value = loads(value)
        except InvalidRecord as exc:
            raise InvalidRecord(
                f"field 'meta' must be a JSON object (in CSV: its JSON text); {exc}"
            ) from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"field 'meta' must be a JSON object, not {kind(value)}")
    return value
