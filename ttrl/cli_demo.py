"""``ttrl demo``: the real daemon loop on the tiny model, with before/after figures.

``ttrl/cli.py`` mounts :func:`demo_command` as ``ttrl demo``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ttrl.cli_support import ConfigOpt, err, fail, out, settings
from ttrl.db import make_engine, transaction

# The demo's loop runs this long (the README's table: 5 minutes on 2 idle cores); a busy
# or slower host makes fewer versions in it, and --max-versions fixes the work instead.
DEMO_MINUTES = 5.0


def demo_command(
    seed: Annotated[int, typer.Option(help="Seed of the problems and the sampling.")] = 0,
    minutes: Annotated[float, typer.Option(help="How long the daemon loop runs.")] = DEMO_MINUTES,
    problems: Annotated[int, typer.Option(min=1, help="Synthetic problems to learn on.")] = 256,
    max_versions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stop after this many model versions, if sooner than --minutes: the same "
            "work on any host, however loaded.",
        ),
    ] = None,
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

    from ttrl.daemon.health import setup_logging
    from ttrl.dashboards.plot import missing_plot_module, plot_history, version_history
    from ttrl.demo import EVAL_SAMPLES, run_demo, set_threads

    setup_logging()
    cfg = settings(config, None)
    # Checked before the loop: a missing extra must not cost the result table at the end.
    no_plot = missing_plot_module()
    if no_plot is not None:
        err.print(
            f"{no_plot} is missing: the demo runs and prints its tables, without the plot "
            "(pip install 'ttrl[plot]' for it)",
            highlight=False,
            markup=False,
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
        if max_versions is not None and result["versions"] >= max_versions
        else f"the {minutes:g}-minute limit, at version {result['versions']}"
    )
    out.print(f"loop stopped at {bound}; {plot}", highlight=False)
    out.print(
        f"work dir: {where} (database, checkpoints): "
        f"ttrl status --db sqlite:///{where / 'ttrl.db'}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(json.dumps(result), soft_wrap=True, highlight=False)


def before_after_table(result: dict[str, Any], problems: int, samples: int) -> Table:
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
