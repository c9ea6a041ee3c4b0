"""Parse and validate problem files (JSONL or CSV) before anything reaches the queue.

Every bad line is reported with its line number and reason; good lines are kept, so the
caller decides between rejecting the whole file and inserting the valid part.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from ttrl.config import IntakeConfig
from ttrl.db.queue import NewProblem, problem_defect

Format = Literal["jsonl", "csv"]
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
BOM = b"\xef\xbb\xbf"
_SKIP_CHUNK = 1 << 20  # the tail of an over-long line is read and dropped in chunks this big


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Parsed:
    problems: list[NewProblem] = field(default_factory=list)
    errors: list[BadLine] = field(default_factory=list)


class InvalidRecord(ValueError):
    """One record is unusable; the message says why."""


def guess_format(name: str, first_bytes: bytes) -> Format:
    """``.csv`` files are CSV, ``.jsonl/.json/.ndjson`` JSONL; otherwise sniff the content."""
    first_bytes = first_bytes.removeprefix(BOM)
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if first_bytes.lstrip()[:1] == b"{" else "csv"


def parse(stream: BinaryIO, fmt: Format, cfg: IntakeConfig, default_passes: int = 1) -> Parsed:
    """Read every record of ``stream``; never raises for bad content."""
    out = Parsed()
    first_line_of_id: dict[str, int] = {}
    records = _jsonl_records(stream, cfg) if fmt == "jsonl" else _csv_records(stream, cfg)
    for line, record in records:
        try:
            if isinstance(record, InvalidRecord):
                raise record
            problem = to_problem(record, cfg, default_passes)
            if problem.external_id is not None:
                seen = first_line_of_id.setdefault(problem.external_id, line)
                if seen != line:
                    raise InvalidRecord(
                        f"duplicate id {problem.external_id!r} (first on line {seen})"
                    )
            out.problems.append(problem)
        except InvalidRecord as exc:
            out.errors.append(BadLine(line, str(exc)))
    return out


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


_JSON_KINDS = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


def _kind(value: Any) -> str:
    """The JSON name of a value's type (``integer``, ``array`` ...)."""
    return next((name for t, name in _JSON_KINDS if isinstance(value, t)), type(value).__name__)


def _clip(text: str, limit: int = 40) -> str:
    """``repr(text)``, shortened for an error message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def _shown(name: str) -> str:
    """A field name as the user should see it: quoted when blank, odd or long."""
    plain = name and name.isprintable() and name.strip() == name and len(name) <= 40
    return name if plain else _clip(name)


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
            raise InvalidRecord(f"key {_clip(key)} appears twice in one object; keep one")
        obj[key] = value
    return obj


def _loads(text: str) -> Any:
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


def _optional_text(record: dict[str, Any], key: str, allow_number: bool = False) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if allow_number and isinstance(value, int | float) and not isinstance(value, bool):
        return getattr(value, "literal", str(value))
    raise InvalidRecord(f"field {key!r} must be a string, not {_kind(value)}")


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def _bool(record: dict[str, Any], key: str) -> bool:
    """A flag: JSON true/false, or (CSV has only text) true/false, 1/0, yes/no; absent or
    empty is false."""
    value = record.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRecord(f"field {key!r} must be true or false, got {_clip(str(value))}")


def _int(record: dict[str, Any], key: str, default: int) -> int:
    """One rule for every integer field, whatever carries it: an integral number (``3``,
    ``3.0``, ``3e0``), written as a JSON number or as text (CSV has only text; JSONL may
    quote it too). ``2.5``, ``"2.5"``, ``true`` and the like are refused the same way."""
    value = record.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRecord(f"field {key!r} must be an integer, not {_kind(value)}")
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
                    f"field {key!r} must be an integer, got {_clip(value)}"
                ) from None
    else:
        number = value
    if isinstance(number, float):
        if not (math.isfinite(number) and number.is_integer()):
            raise InvalidRecord(f"field {key!r} must be an integer, got {_clip(str(shown))}")
        number = int(number)
    return number


def _meta(record: dict[str, Any]) -> dict[str, Any] | None:
    value = record.get("meta")
    if value is None or value == "":
        return None
    if isinstance(value, str):  # CSV carries meta as a JSON string
        try:
            value = _loads(value)
        except InvalidRecord as exc:
            raise InvalidRecord(
                f"field 'meta' must be a JSON object (in CSV: its JSON text); {exc}"
            ) from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"field 'meta' must be a JSON object, not {_kind(value)}")
    return value


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "re-save the file as UTF-8"
        ) from None


def _too_long(size: int, cfg: IntakeConfig) -> InvalidRecord | None:
    if size > cfg.max_line_bytes:
        return InvalidRecord(
            f"line is {size} bytes, over the limit of {cfg.max_line_bytes} "
            "(intake.max_line_bytes); shorten it or raise the limit"
        )
    return None


RecordOrError = tuple[int, "dict[str, Any] | InvalidRecord"]


def _lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """Numbered physical lines with their size in bytes, without the UTF-8 byte-order mark
    some editors write. Of a line over ``limit`` bytes only the start is kept in memory."""
    line = 0
    while raw := stream.readline(limit + 1):
        line += 1
        size = len(raw)
        if size > limit and not raw.endswith(b"\n"):
            while chunk := stream.readline(_SKIP_CHUNK):
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
        if line == 1 and raw.startswith(BOM):
            raw, size = raw[len(BOM) :], size - len(BOM)
        yield line, raw, size


def _jsonl_records(stream: BinaryIO, cfg: IntakeConfig) -> Iterator[RecordOrError]:
    for line, raw, size in _lines(stream, cfg.max_line_bytes):
        if not raw.strip():
            continue
        try:
            if error := _too_long(size, cfg):
                raise error
            obj = _loads(_decode(raw))
            if not isinstance(obj, dict):
                raise InvalidRecord(f"expected a JSON object, got {_kind(obj)}")
            yield line, obj
        except InvalidRecord as exc:
            yield line, exc


def _csv_records(stream: BinaryIO, cfg: IntakeConfig) -> Iterator[RecordOrError]:
    """CSV with a header row; a quoted field may span lines (reported at its first line).

    A malformed record is reported and reading goes on with the next one, except after a
    quoted field the csv reader gives up on: the lines after it are reported as not read.
    """
    bad_lines: dict[int, InvalidRecord] = {}

    def physical_lines() -> Iterable[str]:
        for line, raw, size in _lines(stream, cfg.max_line_bytes):
            try:
                if error := _too_long(size, cfg):
                    raise error
                yield _decode(raw)
            except InvalidRecord as exc:
                bad_lines[line] = exc
                yield "\n"  # keeps line numbering; the record is reported below

    # A field may be as long as a line may be (the csv module's default is 128 KiB).
    csv.field_size_limit(max(csv.field_size_limit(), cfg.max_line_bytes))
    reader = csv.reader(physical_lines())
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        header = []
        bad_lines.setdefault(1, InvalidRecord(f"malformed CSV header: {exc}"))
    if header_error := bad_lines.get(1) or _header_defect(header):
        yield 1, header_error
        return
    start = reader.line_num + 1
    while True:
        try:
            row: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = exc
        end = reader.line_num
        line, start = start, end + 1
        error = next((bad_lines[n] for n in range(line, end + 1) if n in bad_lines), None)
        if isinstance(row, csv.Error) and end > line:
            # The reader gave up inside a quoted field: where that field ends is unknown.
            reason = (
                f"malformed CSV: {row} (the record runs from line {line} to {end}: is a quote "
                f"left open?); the lines after {end} were not read"
            )
            yield line, InvalidRecord(reason)
            return
        if error is not None:
            yield line, error
        elif not isinstance(row, csv.Error) and not any(cell.strip() for cell in row):
            continue  # a blank line
        elif isinstance(row, csv.Error) or len(row) != len(header):
            reason = (
                f"malformed CSV: {row}"
                if isinstance(row, csv.Error)
                else f"expected {len(header)} columns as in the header, got {len(row)}"
            )
            if end > line:
                reason += f" (the record runs from line {line} to {end}: is a quote left open?)"
            yield line, InvalidRecord(reason)
        else:
            yield line, dict(zip(header, row, strict=True))


def _header_defect(header: list[str]) -> InvalidRecord | None:
    if "prompt" not in header:
        got = _clip(", ".join(header), 80)
        return InvalidRecord(f"CSV header must name a 'prompt' column, got {got}")
    if "" in header:
        return InvalidRecord(f"CSV header has an empty column name (column {header.index('') + 1})")
    twice = sorted(h for h, n in Counter(header).items() if n > 1)
    if twice:
        return InvalidRecord(f"CSV header names column(s) {', '.join(twice)} more than once")
    return None
