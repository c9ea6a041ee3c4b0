"""``ttrl answers``: stream the current answers as JSON lines or CSV.

Rows come from ``v_answers`` through a server-side cursor (PostgreSQL) or SQLite's lazy
cursor, ``yield_per`` at a time, and are written as they arrive: an export of a million
problems holds one chunk in memory, never the batch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, Literal, TextIO

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ttrl.dashboards import views

Format = Literal["jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv")
CHUNK_ROWS = 1000

A = views.answers.c
# What an export row holds, in order. `correct` is NULL without a reference answer.
FIELDS = {
    "id": A.problem_id,
    "external_id": A.external_id,
    "batch": A.batch,
    "status": A.status,
    "answer": A.answer,
    "share": A.answer_share,
    "version": A.answer_version,
    "passes_done": A.passes_done,
    "passes_wanted": A.passes_wanted,
    "settled": A.settled,
    "correct": A.answer_correct,
}


def current_answers(conn: Connection, batch: str | None = None) -> Iterator[dict[str, Any]]:
    """Every problem voted at least once (optionally of one ``batch``), in id order."""
    stmt = (
        select(*(col.label(name) for name, col in FIELDS.items()))
        .where(A.answer_version.is_not(None))
        .order_by(A.problem_id)
    )
    if batch is not None:
        stmt = stmt.where(A.batch == batch)
    for row in conn.execute(stmt.execution_options(stream_results=True, yield_per=CHUNK_ROWS)):
        yield row._asdict()


def write_answers(rows: Iterator[dict[str, Any]], out: TextIO, fmt: Format) -> int:
    """Write ``rows`` to ``out`` as ``fmt``; returns the number written."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    write_row: Callable[[Mapping[str, Any]], object]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(FIELDS), lineterminator="\n")
        writer.writeheader()
        write_row = writer.writerow
    else:
        write_row = partial(_write_json_line, out)
    n = 0
    for row in rows:
        write_row(row)
        n += 1
    return n


def _write_json_line(out: TextIO, row: Mapping[str, Any]) -> None:
    out.write(json.dumps(row, ensure_ascii=False) + "\n")
