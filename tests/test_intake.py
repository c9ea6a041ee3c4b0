"""Parsing and validating problem files: every bad line named, good lines kept."""

from __future__ import annotations

import io

import pytest

from ttrl.config import IntakeConfig
from ttrl.intake import Format, Parsed, guess_format, parse

CFG = IntakeConfig(max_prompt_chars=50, max_line_bytes=400)


def run(data: bytes, fmt: Format = "jsonl") -> Parsed:
    return parse(io.BytesIO(data), fmt, CFG)


def test_jsonl_all_fields() -> None:
    parsed = run(
        b'{"prompt": "1+1?", "id": 7, "reference_answer": 2, "batch": "b", "passes": 3,'
        b' "priority": -1, "meta": {"src": "x"}}\n\n'
    )
    assert parsed.errors == []
    (p,) = parsed.problems
    assert (p.prompt, p.external_id, p.reference_answer, p.batch, p.passes, p.priority) == (
        "1+1?",
        "7",
        "2",
        "b",
        3,
        -1,
    )
    assert p.meta == {"src": "x"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"id": "a"}', "missing prompt"),
        (b'{"prompt": "   "}', "missing prompt"),
        (b'{"prompt": 5}', "missing prompt"),
        (b'{"prompt": "x",', "malformed JSON"),
        (b'{"prompt": "x"', "at the end of the line; a closing bracket, brace or quote is missing"),
        (b'{"prompt": "x" "id": "y"}', "Expecting ',' delimiter at column 16"),
        (b'{"prompt": "x", "meta": "{1"}', "'meta' must be a JSON object (in CSV: its JSON text)"),
        (b'["prompt"]', "expected a JSON object"),
        (b'{"prompt": "x", "passes": "two"}', "'passes' must be an integer"),
        (b'{"prompt": "x", "passes": 0}', "'passes' must be >= 1"),
        (b'{"prompt": "x", "priority": true}', "'priority' must be an integer"),
        (b'{"prompt": "x", "fixed_passes": 1}', "'fixed_passes' must be true or false"),
        (b'{"prompt": "x", "fixed_passes": "maybe"}', "'fixed_passes' must be true or false"),
        (b'{"prompt": "x", "meta": [1]}', "'meta' must be a JSON object"),
        (b'{"prompt": "x", "batch": 3}', "'batch' must be a string"),
        (b'{"prompt": "x", "promt": "y"}', "unknown field(s) promt"),
        (b'{"prompt": "' + b"x" * 60 + b'"}', "over the limit of 50"),
        (b'{"prompt": "' + b"x" * 500 + b'"}', "over the limit of 400 (intake.max_line_bytes)"),
        (b'{"prompt": "caf\xe9"}', "not valid UTF-8 (byte 0xe9 at column 16)"),
        (b'{"prompt": "a\\u0000b"}', "prompt contains a NUL character"),
        (b'{"prompt": "x", "id": "' + b"i" * 256 + b'"}', "'id' has 256 characters, over 255"),
        (b'{"prompt": "x", "priority": 99999999999}', "outside the 32-bit integer range"),
        (b'{"prompt": "x", "reference_answer": "a\\u0000"}', "'reference_answer' contains a NUL"),
    ],
)
def test_each_bad_line_is_reported_and_good_lines_kept(line: bytes, reason: str) -> None:
    parsed = run(b'{"prompt": "good 1"}\n' + line + b'\n{"prompt": "good 2"}\n')
    assert [p.prompt for p in parsed.problems] == ["good 1", "good 2"]
    (bad,) = parsed.errors
    assert bad.line == 2
    assert reason in bad.reason


def test_duplicate_ids_in_one_file() -> None:
    parsed = run(b'{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n')
    assert len(parsed.problems) == 1
    assert parsed.errors[0].reason == "duplicate id 'x' (first on line 1)"


def test_csv_with_multiline_fields_and_bad_rows() -> None:
    data = (
        b"prompt,id,passes,meta\n"
        b'"What is\n1+1?",a,2,"{""k"": 1}"\n'
        b"plain,b,,\n"
        b"bad passes,c,x,\n"
        b"too,many,columns,here,!\n"
        b"\xff\xfe,d,,\n"
    )
    parsed = run(data, "csv")
    assert [(p.prompt, p.external_id, p.passes, p.meta) for p in parsed.problems] == [
        ("What is\n1+1?", "a", 2, {"k": 1}),
        ("plain", "b", 1, None),
    ]
    assert [(e.line, e.reason.split(" ")[0]) for e in parsed.errors] == [
        (5, "field"),
        (6, "expected"),
        (7, "not"),
    ]


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(b'\xef\xbb\xbf{"prompt": "p"}\n', "jsonl"), (b"\xef\xbb\xbfprompt,id\np,1\n", "csv")],
)
def test_a_utf8_byte_order_mark_is_ignored(data: bytes, fmt: Format) -> None:
    assert guess_format("-", data[:64]) == fmt
    parsed = run(data, fmt)
    assert parsed.errors == [] and [p.prompt for p in parsed.problems] == ["p"]


def test_csv_without_prompt_column() -> None:
    parsed = run(b"question,id\nx,1\n", "csv")
    assert parsed.problems == []
    assert "must name a 'prompt' column" in parsed.errors[0].reason


@pytest.mark.parametrize(
    ("name", "head", "fmt"),
    [
        ("a.csv", b"{", "csv"),
        ("a.jsonl", b"p", "jsonl"),
        ("-", b'  {"p', "jsonl"),
        ("-", b"prompt,", "csv"),
    ],
)
def test_guess_format(name: str, head: bytes, fmt: str) -> None:
    assert guess_format(name, head) == fmt


@pytest.mark.parametrize(
    ("value", "passes"),
    [(b"3", 3), (b'"3"', 3), (b"2.0", 2), (b'"2.0"', 2), (b"1e1", 10), (b'" 4 "', 4)],
)
def test_integer_fields_follow_one_rule_in_any_spelling(value: bytes, passes: int) -> None:
    """An integral number is an integer whether written as a number or as text (as CSV
    must); before, "3" was accepted and 2.0 refused."""
    parsed = run(b'{"prompt": "x", "passes": ' + value + b"}\n")
    assert parsed.errors == [] and parsed.problems[0].passes == passes
    csv_parsed = run(b"prompt,passes\nx," + value.strip(b'"') + b"\n", "csv")
    assert csv_parsed.errors == [] and csv_parsed.problems[0].passes == passes


@pytest.mark.parametrize("value", [b"2.5", b'"2.5"', b"true", b'"two"', b"[1]"])
def test_non_integers_are_refused_alike(value: bytes) -> None:
    parsed = run(b'{"prompt": "x", "priority": ' + value + b"}\n")
    assert not parsed.problems and "'priority' must be an integer" in parsed.errors[0].reason


@pytest.mark.parametrize(
    ("value", "text", "fixed"),
    [
        (b"true", b"true", True),
        (b"false", b"False", False),
        (b'"yes"', b"yes", True),
        (b'"0"', b"0", False),
        (b"null", b"", False),
    ],
)
def test_fixed_passes_flag(value: bytes, text: bytes, fixed: bool) -> None:
    parsed = run(b'{"prompt": "x", "passes": 3, "fixed_passes": ' + value + b"}\n")
    assert parsed.errors == [] and parsed.problems[0].fixed_passes is fixed
    csv_parsed = run(b"prompt,fixed_passes\nx," + text + b"\n", "csv")
    assert csv_parsed.errors == [] and csv_parsed.problems[0].fixed_passes is fixed
