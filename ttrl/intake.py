"""Parse and validate problem files (JSONL or CSV) before anything reaches the queue.

Every bad line is reported with its line number and reason; good lines are kept, so the
caller decides between rejecting the whole file and inserting the valid part.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from ttrl.config import IntakeConfig
from ttrl.db.queue import NewProblem

Format = Literal["jsonl", "csv"]
FIELDS = ("prompt", "id", "reference_answer", "batch", "passes", "priority", "meta")
MAX_NAME_CHARS = 255  # id and batch columns are VARCHAR(255)
INT32 = (-(2**31), 2**31 - 1)  # priority and passes are 32-bit INTEGER columns
BOM = b"\xef\xbb\xbf"


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
    """Validate one decoded record (JSON object or CSV row) into a :class:`NewProblem`."""
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise InvalidRecord(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRecord("missing prompt (a non-empty string is required)")
    if "\x00" in prompt:
        raise InvalidRecord("prompt contains a NUL character (\\u0000); remove it")
    if len(prompt) > cfg.max_prompt_chars:
        raise InvalidRecord(
            f"prompt has {len(prompt)} characters, over the limit of {cfg.max_prompt_chars} "
            "(intake.max_prompt_chars)"
        )
    return NewProblem(
        prompt=prompt,
        external_id=_name(record, "id", allow_int=True),
        reference_answer=_optional_text(record, "reference_answer", allow_int=True),
        batch=_name(record, "batch") or cfg.default_batch,
        passes=_int(record, "passes", default_passes, minimum=1),
        priority=_int(record, "priority", 0),
        meta=_meta(record),
    )


def _optional_text(record: dict[str, Any], key: str, allow_int: bool = False) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRecord(f"field {key!r} contains a NUL character (\\u0000); remove it")
        return value
    if allow_int and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecord(f"field {key!r} must be a string, not {type(value).__name__}")


def _name(record: dict[str, Any], key: str, allow_int: bool = False) -> str | None:
    value = _optional_text(record, key, allow_int)
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise InvalidRecord(f"field {key!r} has {len(value)} characters, over {MAX_NAME_CHARS}")
    return value


def _int(record: dict[str, Any], key: str, default: int, minimum: int | None = None) -> int:
    value = record.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidRecord(f"field {key!r} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(f"field {key!r} must be an integer, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidRecord(f"field {key!r} must be >= {minimum}, got {value}")
    if not INT32[0] <= value <= INT32[1]:
        raise InvalidRecord(f"field {key!r} is {value}, outside the 32-bit integer range")
    return value


def _meta(record: dict[str, Any]) -> dict[str, Any] | None:
    value = record.get("meta")
    if value is None or value == "":
        return None
    if isinstance(value, str):  # CSV carries meta as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidRecord(f"field 'meta' is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"field 'meta' must be a JSON object, not {type(value).__name__}")
    return value


def _decode(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "re-save the file as UTF-8"
        ) from None


def _too_long(raw: bytes, cfg: IntakeConfig) -> InvalidRecord | None:
    if len(raw) > cfg.max_line_bytes:
        return InvalidRecord(
            f"line is {len(raw)} bytes, over the limit of {cfg.max_line_bytes} "
            "(intake.max_line_bytes)"
        )
    return None


RecordOrError = tuple[int, "dict[str, Any] | InvalidRecord"]


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Numbered physical lines, without the UTF-8 byte-order mark some editors write."""
    for line, raw in enumerate(stream, start=1):
        yield line, raw[len(BOM) :] if line == 1 and raw.startswith(BOM) else raw


def _jsonl_records(stream: BinaryIO, cfg: IntakeConfig) -> Iterator[RecordOrError]:
    for line, raw in _lines(stream):
        if not raw.strip():
            continue
        try:
            if error := _too_long(raw, cfg):
                raise error
            text = _decode(raw, line)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidRecord(f"malformed JSON: {exc.msg} at column {exc.colno}") from None
            if not isinstance(obj, dict):
                raise InvalidRecord(f"expected a JSON object, got {type(obj).__name__}")
            yield line, obj
        except InvalidRecord as exc:
            yield line, exc


def _csv_records(stream: BinaryIO, cfg: IntakeConfig) -> Iterator[RecordOrError]:
    """CSV with a header row; a quoted field may span lines (reported at its first line)."""
    bad_lines: dict[int, InvalidRecord] = {}

    def physical_lines() -> Iterable[str]:
        for line, raw in _lines(stream):
            try:
                if error := _too_long(raw, cfg):
                    raise error
                yield _decode(raw, line)
            except InvalidRecord as exc:
                bad_lines[line] = exc
                yield "\n"  # keeps line numbering; the record is reported below

    reader = csv.reader(physical_lines())
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    if "prompt" not in header:
        yield 1, InvalidRecord(f"CSV header must name a 'prompt' column, got {header}")
        return
    start = reader.line_num + 1
    try:
        for row in reader:
            end = reader.line_num
            error = next((bad_lines[n] for n in range(start, end + 1) if n in bad_lines), None)
            line, start = start, end + 1
            if error is not None:
                yield line, error
            elif any(cell.strip() for cell in row):
                if len(row) != len(header):
                    yield (
                        line,
                        InvalidRecord(
                            f"expected {len(header)} columns as in the header, got {len(row)}"
                        ),
                    )
                else:
                    yield line, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        yield start, InvalidRecord(f"malformed CSV: {exc}")
