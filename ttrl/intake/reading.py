"""Records of a problem file: numbered JSONL objects or CSV rows, or why each is unusable.

Bytes are read line by line with a bounded buffer: of a line over ``intake.max_line_bytes``
only the start is ever held in memory. A record that cannot be decoded comes out as an
:class:`InvalidRecord` at its line, and reading goes on.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from ttrl.config import IntakeConfig
from ttrl.intake.values import InvalidRecord, clip, kind, loads

BOM = b"\xef\xbb\xbf"
_SKIP_CHUNK = 1 << 20  # the tail of an over-long line is read and dropped in chunks this big
RecordOrError = tuple[int, "dict[str, Any] | InvalidRecord"]


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


def jsonl_records(stream: BinaryIO, cfg: IntakeConfig) -> Iterator[RecordOrError]:
    """Each non-blank line of a JSONL file: its JSON object, or why it is none."""
    for line, raw, size in _lines(stream, cfg.max_line_bytes):
        if not raw.strip():
            continue
        try:
            if error := _too_long(size, cfg):
                raise error
            obj = loads(_decode(raw))
            if not isinstance(obj, dict):
                raise InvalidRecord(f"expected a JSON object, got {kind(obj)}")
            yield line, obj
        except InvalidRecord as exc:
            yield line, exc


def csv_records(stream: BinaryIO, cfg: IntakeConfig) -> Iterator[RecordOrError]:
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
        got = clip(", ".join(header), 80)
        return InvalidRecord(f"CSV header must name a 'prompt' column, got {got}")
    if "" in header:
        return InvalidRecord(f"CSV header has an empty column name (column {header.index('') + 1})")
    twice = sorted(h for h, n in Counter(header).items() if n > 1)
    if twice:
        return InvalidRecord(f"CSV header names column(s) {', '.join(twice)} more than once")
    return None
