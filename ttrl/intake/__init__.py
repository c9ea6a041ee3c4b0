"""Parse and validate problem files (JSONL or CSV) before anything reaches the queue.

Every bad line is reported with its line number and reason; good lines are kept, so the
caller decides between rejecting the whole file and inserting the valid part.

Modules: ``reading`` (lines and CSV rows into records), ``values`` (strict JSON, and how
errors name values), ``records`` (one record into a :class:`NewProblem`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from ttrl.config import IntakeConfig
from ttrl.db.queue import NewProblem
from ttrl.intake.reading import BOM, csv_records, jsonl_records
from ttrl.intake.records import FIELDS, to_problem
from ttrl.intake.values import InvalidRecord

Format = Literal["jsonl", "csv"]


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
    records = jsonl_records(stream, cfg) if fmt == "jsonl" else csv_records(stream, cfg)
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


__all__ = [
    "FIELDS",
    "BadLine",
    "Format",
    "InvalidRecord",
    "Parsed",
    "guess_format",
    "parse",
    "to_problem",
]
