"""The ``ttrl`` command line. Thin: each command parses options and calls one module."""

from __future__ import annotations

import sys
from io import BufferedReader
from typing import Annotated, cast

import typer
import yaml

from ttrl import intake
from ttrl.cli_demo import demo_command
from ttrl.cli_support import (
    EXIT_CONFIG,
    EXIT_PARTIAL,
    EXIT_REJECTED,
    ConfigOpt,
    DbOpt,
    database,
    err,
    fail,
    out,
    settings,
)
from ttrl.config import ConfigError, masked
from ttrl.dashboards.cli import answers_command, plot_command, status_tables
from ttrl.db import migrate, queue, transaction
from ttrl.db.migrate import SchemaOutOfDate
from ttrl.toy.cli import eval_command, toy_app

app = typer.Typer(
    help="ttrl: a test-time reinforcement-learning daemon.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Schema migrations.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(toy_app, name="toy")
app.command("eval")(eval_command)
app.command("answers")(answers_command)
app.command("plot")(plot_command)


@config_app.command("show")
def config_show(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Print the effective configuration (files, environment and options applied)."""
    cfg = settings(config, db)
    out.print(yaml.safe_dump(masked(cfg), sort_keys=False), end="", highlight=False, markup=False)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Create or migrate the schema (SQLite or PostgreSQL)."""
    with database(settings(config, db), require_schema=False, create=True) as engine:
        migrate.upgrade(engine, revision)
        out.print(f"schema at revision {migrate.current(engine)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision; 'base' drops all tables.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Migrate the schema down to REVISION."""
    with database(settings(config, db), require_schema=False) as engine:
        migrate.downgrade(engine, revision)
        out.print(f"schema at revision {migrate.current(engine) or 'base (empty)'}")


@db_app.command("current")
def db_current(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Print the schema revision of the database and the one this ttrl ships."""
    with database(settings(config, db), require_schema=False) as engine:
        out.print(f"current: {migrate.current(engine) or 'none'}  head: {migrate.head(engine)}")


@app.command("enqueue")
def enqueue(
    file: Annotated[str, typer.Argument(help="JSONL or CSV file of problems; '-' for stdin.")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="jsonl or csv (default: by name/content).")
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Insert the valid lines, report the rest.")
    ] = False,
    batch: Annotated[
        str | None, typer.Option("--batch", help="Batch for lines that do not name one.")
    ] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Add problems to the queue. Fields: prompt (required), id, reference_answer, batch,
    passes, fixed_passes, priority, meta. Exit 0: all inserted; 1: file rejected, nothing
    inserted (also under --skip-invalid when no line is valid); 3: --skip-invalid inserted
    the valid lines and skipped some."""
    cfg = settings(config, db)
    if batch is not None:
        cfg.intake.default_batch = batch
    if fmt not in (None, "jsonl", "csv"):
        raise fail(f"--format must be jsonl or csv, not {fmt!r}")
    stream, name = _open_input(file)
    with stream:
        given = cast("intake.Format | None", fmt)  # checked above
        chosen = given or intake.guess_format(name, stream.peek(64)[:64])
        parsed = intake.parse(stream, chosen, cfg.intake, cfg.queue.default_passes)
    for bad in parsed.errors:
        err.print(f"{name}: {bad}", highlight=False, markup=False)
    if parsed.errors and not skip_invalid:
        raise fail(
            f"{name}: {len(parsed.errors)} invalid line(s); nothing was inserted. Fix them, "
            "or pass --skip-invalid to insert the valid lines only.",
            EXIT_REJECTED,
        )
    if parsed.errors and not parsed.problems:
        raise fail(f"{name}: no valid line; nothing was inserted. Fix the file.", EXIT_REJECTED)
    with database(cfg) as engine, transaction(engine) as conn:
        result = queue.enqueue(conn, parsed.problems)
    out.print(
        f"{name}: inserted {result.inserted}, already present {len(result.already_present)}, "
        f"invalid {len(parsed.errors)}",
        highlight=False,
    )
    if parsed.errors:
        raise typer.Exit(EXIT_PARTIAL)


def _open_input(file: str) -> tuple[BufferedReader, str]:
    if file == "-":
        return cast(BufferedReader, sys.stdin.buffer), "<stdin>"  # a process's stdin is buffered
    try:
        return open(file, "rb"), file
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None


@app.command("status")
def status(config: ConfigOpt = None, db: DbOpt = None) -> None:
    """Queue by batch and status, the newest model versions with their accuracy, workers."""
    cfg = settings(config, db)
    with database(cfg) as engine, transaction(engine, write=False) as conn:
        tables = status_tables(conn, stale_after_s=3 * cfg.daemon.heartbeat_s)
    for table in tables:
        out.print(table)


@app.command("requeue")
def requeue(
    status: Annotated[
        str, typer.Option(help="failed (a fresh set of attempts) or done (one more pass).")
    ] = "failed",
    batch: Annotated[str | None, typer.Option(help="Only problems of this batch.")] = None,
    error: Annotated[
        str | None, typer.Option(help="Only problems whose last error contains this text.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be requeued; change nothing.")
    ] = False,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """The operator's retry: put failed (or done) problems back in the queue, e.g. after
    fixing what failed them: ttrl requeue --batch aime24 --error "generation failed"."""
    if status not in queue.REQUEUABLE:
        raise fail(f"--status must be one of {', '.join(queue.REQUEUABLE)}, not {status!r}")
    cfg = settings(config, db)
    with database(cfg) as engine, transaction(engine, write=not dry_run) as conn:
        n = queue.requeue(conn, status, batch=batch, error=error, dry_run=dry_run)
    what = f"{status} problem(s)" + (f" of batch {batch!r}" if batch is not None else "")
    what += f" whose last error contains {error!r}" if error is not None else ""
    out.print(f"{'would requeue' if dry_run else 'requeued'} {n} {what}", highlight=False)


@app.command("serve")
def serve(
    config: ConfigOpt = None,
    db: DbOpt = None,
    role: Annotated[
        str | None,
        typer.Option(
            help="all (default: one process does everything), rollout or learner "
            "(several hosts, docs/scale-out.md); overrides daemon.role."
        ),
    ] = None,
) -> None:
    """Run the daemon: answer the queue by majority vote and learn from it, until SIGTERM."""
    cfg = settings(config, db, EXIT_CONFIG)  # systemd must not restart a bad configuration
    if role is not None:
        if role not in ("all", "rollout", "learner"):
            raise fail(f"--role {role!r}: use all, rollout or learner", EXIT_CONFIG)
        cfg = cfg.model_copy(update={"daemon": cfg.daemon.model_copy(update={"role": role})})
    from ttrl.daemon import ranks
    from ttrl.daemon.checkpoints import MissingCheckpoint
    from ttrl.daemon.health import setup_logging
    from ttrl.daemon.service import Service
    from ttrl.daemon.startup import LineageMismatch, build_trainer
    from ttrl.engines import EngineUnavailable
    from ttrl.lm.files import ModelFilesError

    setup_logging()
    rank, world = ranks.world()
    if world > 1 and cfg.daemon.role != "learner":
        raise fail(
            f"{world} ranks: only the learner runs under torchrun/deepspeed; "
            "start rollout workers as plain processes",
            EXIT_CONFIG,
        )
    if rank > 0:  # a DeepSpeed rank of the learner: mirror rank 0's trainer, no database
        import signal

        import torch

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # rank 0 decides when to stop
        ranks.init_process_group(torch.cuda.is_available())
        ranks.follow(lambda d, v: build_trainer(cfg, d, v))
        raise typer.Exit(0)
    with database(cfg):  # an unreachable or old database is said plainly, before loading
        pass
    try:
        code = Service(cfg).run()
    except (
        ConfigError,
        MissingCheckpoint,
        LineageMismatch,
        SchemaOutOfDate,
        FileNotFoundError,
        ModelFilesError,
        EngineUnavailable,  # engine.kind vllm on a host without vLLM
    ) as exc:
        # systemd does not restart on this code (RestartPreventExitStatus): a restart
        # cannot fix a configuration.
        raise fail(str(exc), EXIT_CONFIG) from None
    raise typer.Exit(code)


app.command("demo")(demo_command)  # listed last in --help, after serve


def main() -> None:
    app()


if __name__ == "__main__":
    main()
