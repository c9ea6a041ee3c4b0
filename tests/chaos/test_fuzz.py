"""Hostile input end to end: problem files and completions built to break ttrl.

(a) Problem files. Hypothesis mixes valid lines with hostile ones (empty, binary, non-UTF-8,
raw control characters, NUL, lone surrogates, SQL-looking text, huge / negative / non-integer
numbers, wrong JSON types, deep nesting, over-long lines). Every valid line must come back
from the database exactly, on SQLite and PostgreSQL; every bad line must be reported with
its line number; nothing else may happen (no crash, no row lost or invented).
(b) Completions. `extract` never raises, stays fast on 100k-character hostile text and
returns a piece of the completion; `vote` works on whatever it returns, and the sympy
worker's time bound holds for power towers, huge factorials and LaTeX bombs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from ttrl import answers
from ttrl.answers import AnswersConfig, canonical, extract, vote
from ttrl.config import IntakeConfig
from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.models import Problem
from ttrl.db.queue import INT32, InvalidProblem, NewProblem, problem_defect
from ttrl.intake import parse

TTRL = str(Path(sys.executable).with_name("ttrl"))
# Small limits, so hypothesis reaches both of them with lines of a few kilobytes.
CFG = IntakeConfig(max_prompt_chars=2000, max_line_bytes=8000, default_batch="fuzz")


def fuzz_settings(max_examples: int) -> settings:
    """No deadline on a loaded machine; the function-scoped fixtures are shared by the
    examples of a test (each example empties the table itself; the answers config is
    restored when the test ends)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


DB_SETTINGS = fuzz_settings(30)

# -- (a) problem files -------------------------------------------------------------------

# Text a database must store exactly: anything but NUL and lone surrogates.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
NASTY_BUT_VALID = [
    "'; DROP TABLE problems; --",
    "Robert'); DELETE FROM problems WHERE ''='",
    "1 OR 1=1; SELECT pg_sleep(10)",
    "%s %d {0} $1 ? :name \\N \\\\",
    "\x01\x02\x1b[31mred\x1b[0m\x7f",
    "\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    "\ufeffBOM inside \u202eRTL override\u200b",
    "\U0001f600 \U0010fffd \ufffe\uffff",
    '{"prompt": "a line inside a line"}',
    '"quoted", with, "commas"\n and a second line',
    "\\boxed{\\frac{1}{0}} \\u0000 is six characters",
    "x" * CFG.max_prompt_chars,
]
PROMPT = st.one_of(TEXT, st.sampled_from(NASTY_BUT_VALID)).filter(str.strip)
FLOAT = st.floats(allow_nan=False, allow_infinity=False)
META = st.dictionaries(
    TEXT,
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), FLOAT, TEXT),
    max_size=3,
)
SKIPPED = st.sampled_from([b"", b" ", b"\t\t", b"\r", b" \x0b\x0c "])
# Values of "priority" / "passes" no 32-bit INTEGER column holds, or not integers at all.
BAD_NUMBERS = [
    b"2147483648",
    b"-2147483649",
    b"1" + b"0" * 30,
    b"1" + b"0" * 5000,
    b"1.5",
    b"1e400",
    b"NaN",
    b"-Infinity",
    b'"12abc"',
    b"true",
    b"[1]",
    b'{"n": 1}',
]
INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xe9t\xe9", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]


def dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def valid_line(draw: st.DrawFn, n: int) -> tuple[bytes, NewProblem]:
    """A valid JSONL line (the n-th of its file) and the problem it must become."""
    record: dict[str, Any] = {"prompt": draw(PROMPT)}
    external_id = None
    if draw(st.booleans()):
        if draw(st.booleans()):
            record["id"] = n
            external_id = str(n)
        else:
            external_id = record["id"] = draw(TEXT) + f"#{n}"  # unique in the file
    reference = draw(st.one_of(st.none(), TEXT, st.integers(-(10**40), 10**40), FLOAT))
    if reference is not None:
        record["reference_answer"] = reference
    batch = draw(st.one_of(st.none(), TEXT))
    if batch is not None:
        record["batch"] = batch
    passes = draw(st.one_of(st.none(), st.integers(1, INT32[1])))
    if passes is not None:
        record["passes"] = passes
    priority = draw(st.one_of(st.none(), st.integers(*INT32)))
    if priority is not None:
        record["priority"] = priority
    meta = draw(st.one_of(st.none(), META))
    if meta is not None:
        record["meta"] = meta
    keys = list(record)
    record = {k: record[k] for k in draw(st.permutations(keys))}
    problem = NewProblem(
        prompt=record["prompt"],
        external_id=external_id,
        # A number keeps its JSON spelling: 1e+16 stays "1e+16", not "1e16" or "10000000000000000".
        reference_answer=None
        if reference in (None, "")
        else reference
        if isinstance(reference, str)
        else json.dumps(reference),
        batch=batch or CFG.default_batch,
        passes=passes or 1,
        priority=priority or 0,
        meta=meta,
    )
    return dumps(record), problem


@st.composite
def bad_line(draw: st.DrawFn) -> bytes:
    """A line that must be reported (and never stored)."""
    good = {"prompt": draw(PROMPT)}
    kind = draw(st.integers(0, 17))
    if kind == 0:  # empty or whitespace-only prompt
        return dumps({"prompt": draw(st.sampled_from(["", " ", "\t\n ", "\u3000\u2028"]))})
    if kind == 1:  # prompt of the wrong JSON type, or missing
        value = draw(st.one_of(st.none(), st.integers(), FLOAT, st.booleans(), st.lists(TEXT)))
        return dumps({"prompt": value} if draw(st.booleans()) else {"id": "no prompt"})
    if kind == 2:  # NUL, escaped, in a text field
        field = draw(st.sampled_from(["prompt", "id", "reference_answer", "batch"]))
        return dumps({**good, field: draw(TEXT) + "\x00" + draw(TEXT)})
    if kind == 3:  # a lone surrogate, escaped (json.dumps writes \udXXX)
        surrogate = chr(draw(st.integers(0xD800, 0xDFFF)))
        return json.dumps({"prompt": draw(TEXT) + surrogate}).encode()
    if kind == 4:  # a raw control character inside a JSON string (JSON forbids it)
        char = bytes([draw(st.sampled_from([c for c in range(32) if c != 10]))])
        return b'{"prompt": "a' + char + b'b"}'
    if kind == 5:  # bytes that are not UTF-8 inside a prompt
        return b'{"prompt": "x' + draw(st.sampled_from(INVALID_UTF8)) + b'y"}'
    if kind == 6:  # binary junk
        return b"\x80" + draw(st.binary(max_size=200)).replace(b"\n", b"")
    if kind == 7:  # a hostile number
        field = draw(st.sampled_from([b"priority", b"passes"]))
        numbers = [*BAD_NUMBERS, b"0", b"-1"] if field == b"passes" else BAD_NUMBERS
        return b'{"prompt": "p", "' + field + b'": ' + draw(st.sampled_from(numbers)) + b"}"
    if kind == 8:  # a field of the wrong JSON type
        field, value = draw(
            st.sampled_from(
                [
                    ("batch", 3),
                    ("batch", ["b"]),
                    ("id", True),
                    ("id", {"a": 1}),
                    ("meta", [1]),
                    ("meta", "not an object"),
                    ("meta", 2.5),
                    ("reference_answer", [1, 2]),
                    ("reference_answer", False),
                ]
            )
        )
        return dumps({**good, field: value})
    if kind == 9:  # a JSON value that is not an object
        return draw(st.sampled_from([b"[1, 2]", b'"prompt"', b"123", b"null", b"true"]))
    if kind == 10:  # a valid line cut short
        line = dumps(good)
        return line[: draw(st.integers(1, len(line) - 1))]
    if kind == 11:  # nesting past any sane depth
        depth = draw(st.integers(2000, 3500))
        return b'{"prompt": "p", "meta": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    if kind == 12:  # a key twice
        inner = draw(st.booleans())
        return (
            b'{"prompt": "a", "meta": {"k": 1, "k": 2}}'
            if inner
            else b'{"prompt": "a", "prompt": "b"}'
        )
    if kind == 13:  # an unknown field
        return dumps({**good, draw(st.sampled_from(["promt", "", "\x00", "PROMPT"])): 1})
    if kind == 14:  # a prompt over intake.max_prompt_chars
        return dumps({"prompt": "y" * draw(st.integers(CFG.max_prompt_chars + 1, 3000))})
    if kind == 15:  # a line over intake.max_line_bytes
        return dumps({"prompt": "z", "meta": {"pad": "z" * draw(st.integers(8000, 20000))}})
    if kind == 16:  # id or batch over 255 characters
        field = draw(st.sampled_from(["id", "batch"]))
        return dumps({**good, field: "n" * draw(st.integers(256, 400))})
    return b'{"prompt": "p",\xef\xbb\xbf "id": "x"}'  # a byte-order mark inside a line


@st.composite
def problem_file(draw: st.DrawFn) -> tuple[bytes, list[NewProblem], list[int]]:
    """(file bytes, the problems it holds in order, the numbers of its bad lines)."""
    lines: list[bytes] = []
    problems: list[NewProblem] = []
    bad: list[int] = []
    for n in range(1, draw(st.integers(0, 10)) + 1):
        kind = draw(st.sampled_from(["valid", "valid", "bad", "bad", "skipped"]))
        if kind == "valid":
            line, problem = draw(valid_line(n))
            problems.append(problem)
        elif kind == "bad":
            line = draw(bad_line())
            bad.append(n)
        else:
            line = draw(SKIPPED)
        lines.append(line)
    data = draw(st.sampled_from([b"\n", b"\r\n"])).join(lines)
    if lines and draw(st.booleans()):
        data += b"\n"
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # a byte-order mark at the start is allowed
    return data, problems, bad


def stored(engine: Engine) -> list[NewProblem]:
    """Every problem in the database, in insertion order, as a NewProblem."""
    p = Problem.__table__.c
    with transaction(engine, write=False) as conn:
        rows = conn.execute(
            select(
                p.prompt,
                p.external_id,
                p.reference_answer,
                p.batch,
                p.passes_wanted,
                p.priority,
                p.meta,
                p.status,
            ).order_by(p.id)
        ).all()
    assert {row.status for row in rows} <= {"queued"}
    return [NewProblem(*row[:7]) for row in rows]


def empty(engine: Engine) -> None:
    with transaction(engine) as conn:
        conn.execute(delete(Problem))


@DB_SETTINGS
@given(case=problem_file())
def test_jsonl_valid_lines_stored_exactly_bad_lines_reported(
    engine: Engine, case: tuple[bytes, list[NewProblem], list[int]]
) -> None:
    data, problems, bad = case
    parsed = parse(io.BytesIO(data), "jsonl", CFG)
    assert [e.line for e in parsed.errors] == bad, [str(e) for e in parsed.errors]
    for error in parsed.errors:
        assert str(error).startswith(f"line {error.line}: ") and len(error.reason) > 10
    assert parsed.problems == problems
    empty(engine)
    with transaction(engine) as conn:
        result = queue.enqueue(conn, parsed.problems)
    assert result.inserted == len(problems)
    assert stored(engine) == problems


CSV_FIELDS = ["prompt", "id", "passes", "priority", "meta"]
# Physical lines that must be reported: not UTF-8, wrong column count, bad numbers, too long.
CSV_BAD = st.one_of(
    st.sampled_from(INVALID_UTF8).map(lambda b: b"p" + b + b",x,,,"),
    st.sampled_from([b"only one column", b"a,b,c,d,e,f", b"p,x,0,,", b"p,x,,1.5,", b"p,,,,[1]"]),
    st.integers(8001, 9000).map(lambda n: b"p" * n + b",,,,"),
)
# A quoted field over many lines, past the csv module's 128 KiB field limit: the reader
# cannot tell where it ends, so reading stops there (and says so).
CSV_RUNAWAY = b'"' + (b"q" * 7000 + b"\n") * 20 + b'",x,,,\n'


@st.composite
def csv_file(draw: st.DrawFn) -> tuple[bytes, list[NewProblem], list[int]]:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    chunks, problems, bad, line = [out.getvalue().encode()], [], [], 2
    for n in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            out = io.StringIO(newline="")
            prompt = draw(PROMPT)
            meta = draw(st.one_of(st.none(), META))
            priority = draw(st.integers(*INT32))
            row = [prompt, f"c{n}", "", str(priority), json.dumps(meta) if meta else ""]
            csv.writer(out, lineterminator="\r\n").writerow(row)
            chunk = out.getvalue().encode()
            problems.append(
                NewProblem(prompt, f"c{n}", None, CFG.default_batch, 1, priority, meta or None)
            )
        elif draw(st.integers(0, 9)):
            chunk = draw(CSV_BAD) + b"\n"
            bad.append(line)
        else:
            chunks += [CSV_RUNAWAY, b"never,read,,,\n"]
            bad.append(line)
            break
        chunks.append(chunk)
        line += chunk.count(b"\n")
    return b"".join(chunks), problems, bad


@DB_SETTINGS
@given(case=csv_file())
def test_csv_valid_rows_stored_exactly_bad_rows_reported(
    engine: Engine, case: tuple[bytes, list[NewProblem], list[int]]
) -> None:
    data, problems, bad = case
    parsed = parse(io.BytesIO(data), "csv", CFG)
    assert [e.line for e in parsed.errors] == bad, [str(e) for e in parsed.errors]
    if data.endswith(b"never,read,,,\n"):
        assert parsed.errors[-1].reason.endswith("were not read")
    assert parsed.problems == problems
    empty(engine)
    with transaction(engine) as conn:
        queue.enqueue(conn, parsed.problems)
    assert stored(engine) == problems


ANY_TEXT = st.text(max_size=20)  # NUL and lone surrogates included


@st.composite
def any_problem(draw: st.DrawFn) -> NewProblem:
    """A NewProblem as a program (not intake) might build it: anything goes."""
    number = st.one_of(st.integers(), st.integers(*INT32), st.just(1))
    meta = st.one_of(st.none(), META, st.just({"x": float("nan")}), st.just({"x": float("inf")}))
    return NewProblem(
        prompt=draw(st.one_of(ANY_TEXT, PROMPT)),
        external_id=draw(st.one_of(st.none(), ANY_TEXT.map(lambda s: s + "#"))),
        reference_answer=draw(st.one_of(st.none(), ANY_TEXT)),
        batch=draw(st.one_of(st.just("b"), ANY_TEXT, st.just("n" * 256))),
        passes=draw(number),
        priority=draw(number),
        meta=draw(meta),
    )


@DB_SETTINGS
@given(problems=st.lists(any_problem(), min_size=1, max_size=4, unique_by=lambda p: p.external_id))
def test_enqueue_stores_exactly_or_refuses_before_writing(
    engine: Engine, problems: list[NewProblem]
) -> None:
    """queue.enqueue called directly: the same rules as intake, on both databases."""
    empty(engine)
    defects = [problem_defect(p) for p in problems]
    first_bad = next((i for i, d in enumerate(defects) if d), None)
    if first_bad is None:
        with transaction(engine) as conn:
            queue.enqueue(conn, problems)
        assert stored(engine) == problems
        return
    with pytest.raises(InvalidProblem) as raised, transaction(engine) as conn:
        queue.enqueue(conn, problems)
    assert str(raised.value) == (
        f"problem #{first_bad + 1} (id {problems[first_bad].external_id!r}): {defects[first_bad]}"
    )
    assert stored(engine) == []


HOSTILE_PROBLEMS = [
    NewProblem("a\x00b"),
    NewProblem("x", external_id="id\x00"),
    NewProblem("x", reference_answer="\ud800"),
    NewProblem("x", batch="b" * 256),
    NewProblem("x", priority=2**31),
    NewProblem("x", passes=0),
    NewProblem("x", meta={"v": float("nan")}),
    NewProblem("   "),
]


def test_hostile_problems_get_the_same_refusal_on_sqlite_and_postgres(
    fresh_sqlite_url: str, fresh_pg_url: str
) -> None:
    messages: dict[str, list[str]] = {}
    for url in (fresh_sqlite_url, fresh_pg_url):
        engine = make_engine(url)
        migrate.upgrade(engine)
        messages[url] = []
        for problem in HOSTILE_PROBLEMS:
            with pytest.raises(InvalidProblem) as raised, transaction(engine) as conn:
                queue.enqueue(conn, [NewProblem("fine"), problem])
            messages[url].append(str(raised.value))
        assert stored(engine) == []
        engine.dispose()
    assert messages[fresh_sqlite_url] == messages[fresh_pg_url]
    assert "NUL" in messages[fresh_pg_url][0] and "surrogate" in messages[fresh_pg_url][2]


MB = 1 << 20


def test_a_10_mb_prompt_is_rejected_by_default_and_stored_exactly_when_allowed(
    engine: Engine,
) -> None:
    prompt = ("ünïcödé 10 MB " * (10 * MB // 14))[: 10 * MB]
    data = b'{"prompt": "before"}\n' + dumps({"prompt": prompt}) + b'\n{"prompt": "after"}\n'

    parsed = parse(io.BytesIO(data), "jsonl", IntakeConfig())
    assert [p.prompt for p in parsed.problems] == ["before", "after"]
    (error,) = parsed.errors
    assert error.line == 2 and "over the limit of 1048576 (intake.max_line_bytes)" in error.reason

    roomy = IntakeConfig(max_prompt_chars=11 * MB, max_line_bytes=32 * MB)
    parsed = parse(io.BytesIO(data), "jsonl", roomy)
    assert parsed.errors == [] and len(parsed.problems) == 3
    with transaction(engine) as conn:
        queue.enqueue(conn, parsed.problems)
    assert [p.prompt for p in stored(engine)] == ["before", prompt, "after"]


def test_an_over_long_line_is_never_held_in_memory_whole() -> None:
    line = b'{"prompt": "' + b"x" * (64 * MB) + b'"}\n'
    stream = io.BytesIO(line + b'{"prompt": "kept"}\n')
    tracemalloc.start()
    try:
        parsed = parse(stream, "jsonl", IntakeConfig())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.prompt for p in parsed.problems] == ["kept"]
    assert parsed.errors[0].reason.startswith(f"line is {len(line)} bytes")
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB while skipping a 64 MiB line"


HOSTILE_FILE_LINES = [
    b'{"prompt": "1+1?", "id": "ok-1", "reference_answer": "2"}',
    b'{"prompt": ""}',
    b"\x80\x81binary\x00junk\xff",
    b'{"prompt": "caf\xe9"}',
    b'{"prompt": "nul \\u0000 inside"}',
    b'{"prompt": "\'; DROP TABLE problems; --", "id": "ok-2", "batch": "b\\"; --"}',
    b'{"prompt": "p", "priority": 99999999999999999999}',
    b'{"prompt": "p", "passes": -3}',
    b'{"prompt": ["not", "text"]}',
    b'{"prompt": "tab\there"}',
    b'{"prompt": "\\u0001\\u001b[2J controls, escaped", "id": "ok-3", "priority": -5}',
]
EXPECTED_ERRORS = {
    2: "missing prompt",
    3: "not valid UTF-8",
    4: "not valid UTF-8",
    5: "NUL character",
    7: "outside the 32-bit integer range",
    8: "'passes' must be >= 1",
    9: "missing prompt",
    10: "raw control character",
}


def ttrl_enqueue(path: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TTRL_DB_URL": db_url, "COLUMNS": "300"}
    return subprocess.run(
        [TTRL, "enqueue", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_ttrl_enqueue_names_every_bad_line_and_keeps_the_good_ones(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(HOSTILE_FILE_LINES) + b"\n")

    rejected = ttrl_enqueue(path, db_url)
    assert rejected.returncode == 1, rejected.stderr
    for line, reason in EXPECTED_ERRORS.items():
        assert f"{path}: line {line}: " in rejected.stderr
        assert reason in rejected.stderr.split(f"line {line}: ")[1].splitlines()[0]
    assert f"{len(EXPECTED_ERRORS)} invalid line(s); nothing was inserted" in rejected.stderr
    assert stored(engine) == []

    partial = ttrl_enqueue(path, db_url, "--skip-invalid")
    assert partial.returncode == 3, partial.stderr
    assert "inserted 3, already present 0, invalid 8" in partial.stdout
    assert stored(engine) == [
        NewProblem("1+1?", "ok-1", "2"),
        NewProblem("'; DROP TABLE problems; --", "ok-2", batch='b"; --'),
        NewProblem("\x01\x1b[2J controls, escaped", "ok-3", priority=-5),
    ]


# -- (b) completions ---------------------------------------------------------------------

FRAGMENTS = [
    "\\boxed{",
    "\\fbox{",
    "\\boxed ",
    "{",
    "}",
    "\\{",
    "\\}",
    "\\frac",
    "\\dfrac",
    "\\sqrt",
    "\\sqrt[",
    "]",
    "9^9^9^9",
    "9^{9^{9^{9}}}",
    "100000!",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "$",
    "$$",
    "#### ",
    "The final answer is ",
    "answer: ",
    "\n",
    "\\left(",
    "\\right)",
    "\\begin{pmatrix}",
    "\\end{pmatrix}",
    "&",
    "\\\\",
    ",",
    "\\cup",
    "(",
    ")",
    "[",
    "1",
    "1,000",
    "-",
    "+",
    "^",
    "e400",
    ".5",
    "\\pi",
    "\\text{",
    "\\text{ cm}",
    "x = ",
    " dollars",
    "\\%",
    "\x00",
    "\ufffd",
    "\u2212",
    "\u00b2",  # a digit to str.isdigit, not to int()
    "\u0663",  # ARABIC-INDIC DIGIT THREE, a decimal digit
]
PIECE = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12))
SIZES = st.one_of(st.integers(1, 100), st.sampled_from([1_000, 5_000, 20_000, 100_000]))
# Pieces repeated into the 1k-100k character range, where quadratic code shows.
REPEATED = st.tuples(st.lists(PIECE, min_size=1, max_size=3).map("".join).filter(bool), SIZES).map(
    lambda t: t[0] * max(1, min(t[1], 100_000 // len(t[0])))
)
# Openers (and their closers) nested deep, where recursive code shows.
NESTERS = [
    ("{", "}"),
    ("\\{", "\\}"),
    ("(", ")"),
    ("(1,", ")"),
    ("\\sqrt{", "}"),
    ("\\frac{1}{", "}"),
    ("\\text{", "}"),
    ("\\left(", "\\right)"),
    ("\\sqrt", ""),
    ("\\frac", ""),
    ("-", ""),
    ("\\(", ""),
    ("\\[", ""),
    ("$", ""),
]
NESTED = st.tuples(st.sampled_from(NESTERS), SIZES, PIECE).map(
    lambda t: t[0][0] * min(t[1], 20_000) + t[2] + t[0][1] * min(t[1], 20_000)
)
LEAD_INS = st.sampled_from(["", "\\boxed{", "The final answer is ", "answer: ", "#### ", "$"])
BODY = st.one_of(PIECE, REPEATED, NESTED)
COMPLETION = st.tuples(LEAD_INS, st.lists(BODY, min_size=1, max_size=4).map("".join), PIECE).map(
    "".join
)
# Inputs that once took extract or vote down (recursion) or took minutes (a quadratic scan).
KILLERS = [
    "answer: " + "\\(" * 50_000,
    "answer: " + "\\[" * 50_000,
    "\\boxed{" + "\\sqrt" * 5_000 + "{2}}",
    "\\boxed{" + "\\frac" * 5_000 + "12}",
    "\\boxed{" + "\\{" * 3_000 + "1" + "\\}" * 3_000 + "}",
    "\\boxed{" + "(1," * 3_000 + "1" + ")" * 3_000 + "}",
    "\\boxed{\\sqrt\u00b2}",
]
# Pure-Python parts (extract, clean, exact keys) on a loaded 2-core machine; they take
# ~0.1 s on the worst 100k-character input found.
PURE_BOUND_S = 2.0
FUZZ_SETTINGS = fuzz_settings(60)


@pytest.fixture
def answers_config() -> Iterator[None]:
    """Restore the process-wide answers configuration after a test that changes it."""
    yield
    answers.configure(AnswersConfig())


@FUZZ_SETTINGS
@given(completion=COMPLETION)
@example(completion=KILLERS[0])
@example(completion=KILLERS[1])
def test_extract_never_raises_and_stays_fast(completion: str) -> None:
    start = time.monotonic()
    answer = extract(completion)
    assert time.monotonic() - start < PURE_BOUND_S
    assert answer is None or (answer.strip() and answer in completion)


@FUZZ_SETTINGS
@given(group=st.lists(COMPLETION, min_size=1, max_size=6))
@example(group=KILLERS)
def test_vote_works_on_whatever_extract_returns(answers_config: None, group: list[str]) -> None:
    """symbolic off: the exact parser and the cleaner alone (sympy's bound is tested below)."""
    answers.configure(AnswersConfig(symbolic=False))
    extracted = [extract(c) for c in group]
    start = time.monotonic()
    v = vote(extracted)
    assert time.monotonic() - start < PURE_BOUND_S * len(group)
    assert v.n == len(group) and 0.0 <= v.share <= 1.0
    assert sum(v.rewards) == v.count
    assert [m is None for m in v.membership] == [a is None or not a.strip() for a in extracted]
    assert v.label is None if v.count == 0 else v.label in extracted


# Each takes sympy past any sane time (or memory), or the exact parser past its limits.
SYMPY_BOMBS = [
    "9^{9^{9^{9}}}",
    "100000000!",
    "(x+1)^{100000}",
    "\\prod_{k=1}^{10^{9}} k",
    "\\binom{10^{12}}{10^{6}}",
    "e^{e^{e^{e^{e^{10}}}}}",
    "\\sqrt{" * 60 + "2" + "}" * 60,
    "\\frac{1}{" * 40 + "x" + "}" * 40,
    "\\underbrace{" + "x+" * 150 + "x}_{n}",
]


def test_sympy_bound_holds_for_hostile_answers_and_the_vote_still_counts(
    answers_config: None,
) -> None:
    config = AnswersConfig(timeout_s=0.5)
    answers.configure(config)
    answers.warm_up()
    slack_s = 3.0  # the kill and a replacement worker's start on a loaded 2-core machine
    for bomb in SYMPY_BOMBS:
        start = time.monotonic()
        key = canonical(bomb)
        elapsed = time.monotonic() - start
        assert elapsed < config.timeout_s + slack_s, f"{bomb[:40]!r} took {elapsed:.1f}s"
        assert key.text
    completions = [f"so \\boxed{{{bomb}}}" for bomb in SYMPY_BOMBS]
    completions += ["\\boxed{3}", "The final answer is 3.", "#### 3", "\\boxed{\\frac{6}{2}}"]
    v = vote([extract(c) for c in completions * 2])  # each bomb twice: memoised, not re-run
    assert v.label_key is not None and v.label_key.text == "3" and v.count == 8
