"""The dashboard commands, for ``ttrl/cli.py`` to register: ``answers``, ``plot``, and the
tables ``status`` prints.

They reuse the options, settings loader and database guard of ``ttrl.cli_support``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import exists, select

from ttrl.cli_support import ConfigOpt, DbOpt, database, err, fail, settings
from ttrl.dashboards import export
from ttrl.dashboards.plot import NothingToPlot, plot_history, version_history
from ttrl.dashboards.status import status_tables
from ttrl.db import transaction
from ttrl.db.models import Problem

__all__ = ["answers_command", "plot_command", "status_tables"]


def answers_command(
    batch: Annotated[
        str | None, typer.Option("--batch", "-b", help="Only this batch (default: all).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")
    ] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Export the current answer of every voted problem, with its vote share and model
    version. Streams: the export's size does not bound memory."""
    if fmt not in export.FORMATS:
        raise fail(f"--format must be one of {', '.join(export.FORMATS)}, not {fmt!r}")
    with database(settings(config, db)) as engine, transaction(engine, write=False) as conn:
        if (
            batch is not None
            and not conn.execute(select(exists().where(Problem.batch == batch))).scalar()
        ):
            raise fail(f"no problem is in batch {batch!r}: see the batches with `ttrl status`")
        rows = export.current_answers(conn, batch)
        if out is None:
            try:
                n = export.write_answers(rows, sys.stdout, fmt)
                sys.stdout.flush()
            except BrokenPipeError:
                # The reader (head, a pager) stopped early: not an error. Point stdout at
                # devnull so the interpreter's last flush does not raise again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        else:
            n = _write_file(out, rows, fmt)
    where = f" of batch {batch!r}" if batch is not None else ""
    err.print(f"exported {n} answers{where} to {out or 'stdout'}", highlight=False)


def _write_file(out: Path, rows: Iterator[dict[str, Any]], fmt: export.Format) -> int:
    """Write to ``out.part`` and rename at the end: a broken export never looks complete."""
    part = out.with_name(out.name + ".part")
    try:
        with open(part, "w", encoding="utf-8", newline="") as f:
            n = export.write_answers(rows, f, fmt)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror}") from None
    os.replace(part, out)
    return n


def plot_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path(
        "ttrl-accuracy.png"
    ),
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Plot label accuracy, reward accuracy, pass@1 and vote share against model version."""
    with database(settings(config, db)) as engine, transaction(engine, write=False) as conn:
        history = version_history(conn)
    try:
        plot_history(history, out)
    except NothingToPlot as exc:
        raise fail(str(exc), code=1) from None
    except ModuleNotFoundError as exc:
        raise fail(
            f"{exc.name} is missing: install the plot extra, pip install 'ttrl[plot]'"
        ) from None
    err.print(f"wrote {out} ({len(history)} model versions)", highlight=False)
