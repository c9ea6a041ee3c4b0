"""The ``ttrl`` command line. Thin: each command parses options and calls one module."""

from __future__ import annotations

import sys
from io import BufferedReader
from pathlib import Path
from typing import Annotated, cast

import typer
import yaml
from rich.table import Table

from ttrl import intake
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
from ttrl.db import make_engine, migrate, queue, transaction
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
    from ttrl.daemon.health import setup_logging
    from ttrl.daemon.service import (
        LineageMismatch,
        MissingCheckpoint,
        Service,
        build_trainer,
    )
    from ttrl.engines import EngineUnavailable, ModelFilesError

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


# The demo's loop ends after DEMO_VERSIONS model versions (4-5 minutes on 2 idle cores),
# or at DEMO_MINUTES on a host too slow or busy to make them: the same work, any host.
DEMO_VERSIONS = 100
DEMO_MINUTES = 30.0


@app.command("demo")
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the problems and the sampling.")] = 0,
    minutes: Annotated[
        float, typer.Option(help="Time limit of the daemon loop (a busy host's bound).")
    ] = DEMO_MINUTES,
    problems: Annotated[int, typer.Option(min=1, help="Synthetic problems to learn on.")] = 256,
    max_versions: Annotated[
        int,
        typer.Option(
            min=1,
            help="Stop after this many model versions: the same work on any host, however "
            "loaded (--minutes bounds the time).",
        ),
    ] = DEMO_VERSIONS,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Where the database and checkpoints go (default: a new temp dir, kept)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch CPU threads (default: OMP_NUM_THREADS if set, else the idle cores, "
            "at most 4).",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """The TTRL effect in minutes: the real daemon on the tiny model, before/after figures,
    a plot (ttrl-demo.png in --workdir, else here). The last line printed is JSON."""
    import json
    import tempfile

    from ttrl.daemon.demo import EVAL_SAMPLES, run_demo, set_threads
    from ttrl.daemon.health import setup_logging
    from ttrl.dashboards.plot import missing_plot_module, plot_history, version_history

    setup_logging()
    cfg = settings(config, None)
    # Checked before the loop: a missing extra must not cost the result table at the end.
    no_plot = missing_plot_module()
    if no_plot is not None:
        err.print(
            f"{no_plot} is missing: the demo runs and prints its tables, without the plot "
            "(pip install 'ttrl[plot]' for it)",
            highlight=False,
        )
    set_threads(threads)
    # The work dir is kept: the follow-up commands (status, eval, plot) read it.
    where = workdir or Path(tempfile.mkdtemp(prefix="ttrl-demo-"))
    try:
        result = run_demo(cfg, seed, minutes, problems, where, max_versions)
    except FileExistsError as exc:
        raise fail(str(exc)) from None
    engine = make_engine(f"sqlite:///{where / 'ttrl.db'}")
    with transaction(engine, write=False) as conn:
        history = version_history(conn)
    engine.dispose()
    table = Table(title="votes by model version (graded against the hidden references)")
    for col in ("version", "votes", "label acc", "reward acc", "vote share", "pass@1"):
        table.add_column(col, justify="right")
    for r in history:
        table.add_row(
            str(r.version),
            str(r.votes),
            *(
                f"{x:.3f}" if x is not None else "-"
                for x in (r.label_accuracy, r.reward_accuracy, r.majority_ratio, r.pass_at_1)
            ),
        )
    out.print(table)
    out.print(before_after_table(result, problems, EVAL_SAMPLES))
    plot = (
        f"no plot ({no_plot} is missing)"
        if no_plot is not None
        else f"plot: {plot_history(history, (workdir or Path.cwd()) / 'ttrl-demo.png')}"
    )
    bound = (
        f"{result['versions']} versions"
        if result["versions"] >= max_versions
        else f"the {minutes:g}-minute limit, at {result['versions']} of {max_versions} "
        "versions (a slow or busy host)"
    )
    out.print(f"loop stopped at {bound}; {plot}", highlight=False)
    out.print(
        f"work dir: {where} (database, checkpoints): "
        f"ttrl status --db sqlite:///{where / 'ttrl.db'}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(json.dumps(result), soft_wrap=True, highlight=False)


def before_after_table(result: dict, problems: int, samples: int) -> Table:
    """The demo's figures, base model against the last version, on the same problems."""
    table = Table(title=f"the {problems} problems, base model -> version {result['versions']}")
    for col in ("", "before", "after", "change"):
        table.add_column(col, justify="right")
    rows = (
        ("answers (the daemon's labels)", "answers"),
        ("greedy", "greedy"),
        ("pass@1", "pass1"),
        (f"maj@{samples}", "maj"),
    )
    for name, key in rows:
        before, after = result[f"{key}_before"], result[f"{key}_after"]
        shown = [f"{x:.3f}" if x is not None else "-" for x in (before, after)]
        change = "-" if before is None or after is None else f"{after - before:+.3f}"
        table.add_row(name, *shown, change)
    return table


def main() -> None:
    app()


if __name__ == "__main__":
    main()
