"""`ttrl answers`, `ttrl plot` and the `ttrl status` tables, on the seeded history.

The commands run through a real Typer app exactly as ``ttrl/cli.py`` registers them.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from rich.console import Console
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from ttrl.dashboards import export, views
from ttrl.dashboards.cli import answers_command, plot_command, status_tables
from ttrl.dashboards.plot import NothingToPlot, plot_history, version_history
from ttrl.db import make_engine, migrate, transaction
from ttrl.db.models import Problem

from .conftest import History

app = typer.Typer()
app.command("answers")(answers_command)
app.command("plot")(plot_command)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _run(history: History, *args: str) -> typer.testing.Result:
    return CliRunner().invoke(app, [*args, "--db", _url(history.engine)])


def _voted(history: History, batch: str | None = None) -> list[dict]:
    a = views.answers.c
    stmt = select(views.answers).where(a.answer_version.is_not(None)).order_by(a.problem_id)
    if batch:
        stmt = stmt.where(a.batch == batch)
    with transaction(history.engine, write=False) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def test_answers_jsonl_and_csv(history: History, tmp_path: Path) -> None:
    want = _voted(history, "beta")
    r = _run(history, "answers", "--batch", "beta", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [g["id"] for g in got] == [w["problem_id"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert (g["answer"], g["share"], g["version"], g["correct"]) == (
            w["answer"],
            w["answer_share"],
            w["answer_version"],
            w["answer_correct"],
        )
        assert g["batch"] == "beta" and list(g) == list(export.FIELDS)
    assert any(g["answer"] is None for g in got) or any(w["answer"] for w in want)

    out = tmp_path / "all.csv"
    r = _run(history, "answers", "--format", "csv", "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open(newline="")))
    assert [int(row["id"]) for row in rows] == [w["problem_id"] for w in _voted(history)]
    assert f"exported {len(rows)} answers to {out}" in r.stderr
    assert not out.with_name("all.csv.part").exists()


def test_answers_bad_input_is_named(history: History) -> None:
    r = _run(history, "answers", "--batch", "nope")
    assert r.exit_code == 2 and "no problem is in batch 'nope'" in r.stderr
    r = _run(history, "answers", "--format", "xml")
    assert r.exit_code == 2 and "--format must be one of jsonl, csv, not 'xml'" in r.stderr


class _Sink(io.TextIOBase):
    """Counts what an export writes, keeping none of it; calls ``probe`` once, mid-export."""

    def __init__(self, probe: Callable[[], None]) -> None:
        self.lines, self.probe = 0, probe

    def write(self, s: str) -> int:
        self.lines += s.count("\n")
        if self.lines == 10:
            self.probe()
        return len(s)


def _fill(engine: Engine, n: int) -> None:
    rows = [
        {
            "prompt": f"q{i}",
            "batch": "big",
            "answer": str(i),
            "answer_share": 0.5,
            "answer_version": 1,
        }
        for i in range(n)
    ]
    with transaction(engine) as conn:
        for i in range(0, n, 5000):
            conn.execute(insert(Problem), rows[i : i + 5000])


def _export(engine: Engine) -> tuple[int, int, list[str]]:
    """Rows written, the peak of Python memory while writing them, and (PostgreSQL) the
    server-side cursors open mid-export."""
    open_cursors: list[str] = []
    with transaction(engine, write=False) as conn:

        def probe() -> None:
            if engine.dialect.name == "postgresql":
                sql = "SELECT statement FROM pg_cursors"
                open_cursors.extend(conn.exec_driver_sql(sql).scalars())

        tracemalloc.start()
        n = export.write_answers(export.current_answers(conn, "big"), _Sink(probe), "jsonl")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return n, peak, open_cursors


def test_answers_export_streams(engine: Engine) -> None:
    """Ten times the rows, about the same memory: rows are written as they are fetched. On
    PostgreSQL they come through a server-side cursor (libpq would otherwise hold the whole
    result in C memory, where tracemalloc cannot see it)."""
    _fill(engine, 2_000)
    n_small, small, _ = _export(engine)
    _fill(engine, 18_000)
    n_big, big, open_cursors = _export(engine)
    assert (n_small, n_big) == (2_000, 20_000)
    assert big < 2 * small + 256 * 1024, (small, big)
    if engine.dialect.name == "postgresql":
        assert len(open_cursors) == 1 and "FROM v_answers" in open_cursors[0], open_cursors


def test_answers_piped_into_head_exits_quietly(fresh_sqlite_url: str) -> None:
    """`ttrl answers | head` is normal use: a reader that stops early is not an error."""
    engine = make_engine(fresh_sqlite_url)
    migrate.upgrade(engine)
    _fill(engine, 5_000)  # far more than a pipe buffer holds
    engine.dispose()
    code = (
        "import typer; from ttrl.dashboards.cli import answers_command; "
        "app = typer.Typer(); app.command()(answers_command); app()"
    )
    r = subprocess.run(
        [
            "bash",
            "-c",
            'set -o pipefail; "$0" -c "$1" --db "$2" | head -n 1',
            sys.executable,
            code,
            fresh_sqlite_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["batch"] == "big"
    assert "Error" not in r.stderr


def test_status_tables(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        tables = status_tables(conn)
        acc = {r.model_version: r for r in conn.execute(select(views.accuracy_by_version))}
    console = Console(record=True, width=220)
    for t in tables:
        console.print(t)
    shown = console.export_text()
    assert [t.title for t in tables] == ["queue", "model versions (newest 5)", "workers"]
    for batch in ("alpha", "beta", "gamma"):
        assert batch in shown
    assert f"{acc[2].label_accuracy:.1%}" in shown
    assert f"{acc[1].majority_ratio:.1%}" in shown
    ids, _host, _pid, _role, states, *_ = (col._cells for col in tables[2].columns)
    state_of = dict(zip(ids, states, strict=True))
    assert state_of["w-dead"] == "[red]serving (stale)[/]"  # crashed: never said stopped
    assert state_of["w-live"] == "starting"
    versions = tables[1].columns[0]._cells
    assert versions == ["2", "1", "0"]
    expired = tables[0].columns[-1]._cells
    assert sorted(expired) == ["0", "0", "[red]1[/]"]
    settled = next(c for c in tables[0].columns if c.header == "settled")._cells
    assert sorted(settled) == ["0", "0", "1"]  # p1, settled by the pass policy


def test_plot_png(history: History, tmp_path: Path) -> None:
    import matplotlib.image

    out = tmp_path / "plots" / "ttrl.png"
    r = _run(history, "plot", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (720, 960)
    assert pixels[..., :3].std() > 0.05  # lines and text, not a blank canvas
    assert "wrote" in r.stderr and "(3 model versions)" in r.stderr


def test_plot_of_nothing_says_so(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine, write=False) as conn:
        assert version_history(conn) == []
    with pytest.raises(NothingToPlot, match="no votes stored yet"):
        plot_history([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
