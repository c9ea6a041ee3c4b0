"""Commands of the tiny model: ``ttrl toy problems``, ``ttrl toy build`` and ``ttrl eval``.

The lead's ``ttrl/cli.py`` mounts :data:`toy_app` as ``ttrl toy`` and :func:`eval_command`
as ``ttrl eval``. Thin: each command parses options and calls one module.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ttrl.toy.task import LEVELS, generate_problems

toy_app = typer.Typer(
    help="The tiny model shipped with ttrl and its synthetic arithmetic task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@toy_app.command("problems")
def problems_command(
    seed: Annotated[int, typer.Option(help="Seed of the problem stream (same seed, same file).")],
    count: Annotated[int, typer.Option(min=1, help="How many problems.")] = 256,
    level: Annotated[
        list[int] | None,
        typer.Option(
            help=f"Difficulty level(s), repeatable: {', '.join(map(str, LEVELS))} "
            "(default: all, in turn)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write synthetic arithmetic problems (test split) as JSONL for ttrl enqueue / ttrl eval."""
    try:
        rows = [p.to_record() for p in generate_problems(seed, count, tuple(level or ()))]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--level") from None
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        typer.echo(f"wrote {len(rows)} problems to {out}", err=True)


@toy_app.command("build")
def build_command(
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and training stream.")] = 0,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Length of the learning-rate schedule (default: 2400)."),
    ] = None,
    stop_share: Annotated[
        float | None,
        typer.Option(
            help="Share of the schedule trained (default: the shipped 0.75, 1800 of 2400 "
            "steps; 1 trains all of it).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Model directory to write (default: the shipped one)."),
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="torch CPU threads; the same count gives the same weights.")
    ] = 1,
    any_order: Annotated[
        bool,
        typer.Option(
            "--any-order/--in-order",
            help="Solutions that add in any order (the shipped model: its majority beats greedy "
            "at temperature 1.0), or left to right only (sampled at 1.5 by default).",
        ),
    ] = True,
) -> None:
    """Pretrain the tiny model from scratch on CPU (deterministic) and save it."""
    # Imported here: torch and transformers would slow down every other ttrl command.
    from ttrl.toy.build import SHIPPED_DIR, build
    from ttrl.toy.train import TrainConfig

    cfg = TrainConfig(seed=seed, threads=threads, any_order=any_order)
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    if stop_share is not None:
        try:
            cfg = replace(cfg, stop_share=stop_share)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--stop-share") from None
    path = build(cfg, out or SHIPPED_DIR)
    typer.echo(f"saved the tiny model to {path}", err=True)


def eval_command(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Problems with reference_answer (JSONL or CSV).")
    ],
    model: Annotated[
        str,
        typer.Option(help="Local model directory, or builtin:tiny (the model shipped with ttrl)."),
    ] = "builtin:tiny",
    n: Annotated[int, typer.Option("-n", min=1, help="Samples per problem (maj@n, pass@1).")] = 16,
    temperature: Annotated[
        float | None,
        typer.Option(min=0.0, help="Sampling temperature (default: the model's own, else 1.0)."),
    ] = None,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling; 1 disables it.")] = 1.0,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Completion length cap (default: the model's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same numbers).")] = 0,
    device: Annotated[str, typer.Option(help="auto (cuda if available), cpu or cuda:N.")] = "auto",
    chat_template: Annotated[
        bool, typer.Option(help="Wrap prompts in the tokenizer's chat template, if it has one.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Greedy accuracy, pass@1 and maj@n of a model on problems with reference answers."""
    from ttrl.engines.base import SamplingParams
    from ttrl.engines.hf import HFEngine
    from ttrl.toy.evaluate import evaluate, read_labelled

    if temperature == 0:
        raise typer.BadParameter(
            "0 means greedy decoding, but pass@1 and maj@n need samples; give a positive "
            "temperature (greedy accuracy is reported anyway)",
            param_hint="--temperature",
        )
    try:
        with file.open("rb") as stream:
            problems = read_labelled(stream, str(file))
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--file") from None
    try:
        engine = HFEngine(model, device=device, use_chat_template=chat_template)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    defaults = engine.generation_defaults
    sampling = SamplingParams(
        temperature=temperature if temperature is not None else (defaults.temperature or 1.0),
        top_p=top_p,
        max_new_tokens=max_new_tokens or defaults.max_new_tokens or 512,
        seed=seed,
    )
    report = evaluate(engine, problems, n, sampling, model=model)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(
        f"{report.problems} problems, n={report.n}, temperature={report.temperature}, "
        f"{report.seconds:.0f}s\n"
        f"greedy accuracy  {report.greedy_accuracy:6.1%}\n"
        f"pass@1           {report.pass_at_1:6.1%}\n"
        f"maj@{report.n:<12} {report.maj_at_n:6.1%}\n"
        f"mean vote share  {report.mean_majority_share:6.1%}"
    )
    for name, m in report.groups.items():
        typer.echo(
            f"  {name}: {m['problems']:.0f} problems, greedy {m['greedy_accuracy']:.1%}, "
            f"pass@1 {m['pass@1']:.1%}, maj@{report.n} {m[f'maj@{report.n}']:.1%}"
        )
