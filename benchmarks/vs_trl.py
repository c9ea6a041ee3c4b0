"""ttrl's daemon loop against the do-it-yourself TTRL a user would write instead: TRL's
``GRPOTrainer`` with a majority-vote reward function.

Both sides get the same work and the same budget, each in its own process (so peak RSS is
its own), one after the other, the order alternating per seed:

- the demo's problems (``ttrl.toy.task``, 256 by default) and the shipped tiny model;
- N = ``daemon.votes`` completions per problem, all of them trained (``rl.train_samples``);
- the sampling of ``engine.sampling`` (temperature, max_new_tokens), no top-k / top-p;
- the same objective: GRPO advantages (group std), token-mean loss, ratio clip 0.2, no KL,
  gradient-norm clip 1.0, old logprobs recomputed for the later mini-batches;
- the same optimiser and schedule: ttrl's AdamW param groups (``rl.norm_lr_scale``) and
  cosine decay, handed to TRL through ``optimizers=``;
- the same batch shape: 16 problems x N completions per round, ``rl.mini_batches`` AdamW
  steps per round (TRL: ``steps_per_generation``);
- the same reward: agreement with the majority of the group's extracted answers
  (``ttrl.answers``), 0 for every completion of a group whose label won less than
  ``rl.min_label_share`` of the votes (ttrl skips such groups; the zero reward is TRL's way
  to give them no gradient);
- the same wall-clock budget for the loop (``ttrl demo``'s loop; ``trainer.train()``), then
  the same evaluation of the final weights (``ttrl eval``'s machinery, same sampling seed).

Printed per side: problems voted per minute, GRPO updates per minute (ttrl: model versions;
TRL: finished generation rounds, each ``mini_batches`` optimizer steps), trained tokens per
second (completion tokens of groups that carry a gradient; TRL also runs a forward and
backward over the rest), peak RSS, the label accuracy at the end (each voted problem's
newest majority label against the hidden reference, which no reward sees) and the final
weights' pass@1 / maj@N / greedy; then the ratios ttrl / TRL, with mean and range over seeds.

Needs the benchmark extra: ``pip install -e '.[bench-trl]'``.

    python benchmarks/vs_trl.py                         # seeds 4-6 x 3 minutes per side
    python benchmarks/vs_trl.py --seeds 7 --minutes 1   # a quick check of the script
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from memory import peak_rss_gib

HERE = Path(__file__).resolve()
SIDES = ("ttrl", "trl")
ROUND_PROBLEMS = 16  # problems per round: queue.claim_batch and daemon.update_every_groups
ACCURACIES = ("label accuracy", "pass@1", "maj@N", "greedy")


@dataclass
class LatestLabels:
    """Each voted problem's newest majority label, graded against its hidden reference."""

    correct: dict[str, bool]

    def accuracy(self) -> float:
        return sum(self.correct.values()) / len(self.correct) if self.correct else math.nan


def ttrl_side(seed: int, minutes: float, problems: int, workdir: Path) -> dict[str, Any]:
    """The demo's loop (the real daemon, ``ttrl.daemon.service.Service``) for ``minutes``."""
    from sqlalchemy import text

    from ttrl.config import load_settings
    from ttrl.db import make_engine, transaction
    from ttrl.demo import run_demo, set_threads

    threads = set_threads()
    result = run_demo(load_settings(), seed, minutes, problems, workdir)
    db = make_engine(f"sqlite:///{workdir / 'ttrl.db'}")
    with transaction(db, write=False) as conn:
        voted = conn.execute(text("SELECT count(*) FROM votes")).scalar_one()
        tokens, train_s = conn.execute(
            text("SELECT coalesce(sum(n_tokens), 0), coalesce(sum(train_s), 0) FROM model_versions")
        ).one()
        latest = conn.execute(
            text(
                "SELECT v.problem_id, v.label_correct FROM votes v JOIN "
                "(SELECT problem_id, max(id) AS id FROM votes GROUP BY problem_id) n "
                "ON v.id = n.id"
            )
        ).all()
    db.dispose()
    labels = LatestLabels({str(pid): bool(ok) for pid, ok in latest})
    return {
        "threads": threads,
        "seconds": result["seconds"],
        "voted": voted,
        "updates": result["versions"],
        "trained_tokens": int(tokens),
        "backward_tokens": int(tokens),
        "train_seconds": round(float(train_s), 1),
        "problems_seen": len(labels.correct),
        "label_accuracy": labels.accuracy(),
        "pass1": result["pass1_after"],
        "maj": result["maj_after"],
        "greedy": result["greedy_after"],
        "pass1_before": result["pass1_before"],
        "maj_before": result["maj_before"],
        "greedy_before": result["greedy_before"],
    }


def trl_side(seed: int, minutes: float, problems: int, workdir: Path) -> dict[str, Any]:
    """TRL's GRPOTrainer on the same problems, model, recipe and budget."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ttrl.answers import equivalent, extract, vote
    from ttrl.config import load_settings
    from ttrl.daemon.startup import rl_config
    from ttrl.engines import load_engine
    from ttrl.lm.load import load_tokenizer
    from ttrl.lm.paths import resolve_model_path
    from ttrl.rl.backends import make_optimizer, make_schedule
    from ttrl.toy.evaluate import LabelledProblem, evaluate
    from ttrl.toy.task import generate_problems

    cfg = load_settings()
    rl = rl_config(cfg)
    n = cfg.daemon.votes
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    model_dir = resolve_model_path(cfg.engine.model)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = load_tokenizer(model_dir)
    tasks = list(generate_problems(seed, problems, ()))
    dataset = Dataset.from_list([{"prompt": p.prompt, "reference": str(p.answer)} for p in tasks])
    labels = LatestLabels({})
    counts = {"voted": 0, "signal_tokens": 0, "backward_tokens": 0}

    def majority_reward(
        prompts: list[str],
        completions: list[str],
        completion_ids: list[list[int]],
        reference: list[str],
        **_: Any,
    ) -> list[float]:
        rewards: list[float] = []
        for start in range(0, len(completions), n):
            group = slice(start, start + n)
            v = vote([extract(c) for c in completions[group]])
            tokens = sum(len(ids) for ids in completion_ids[group])
            counts["voted"] += 1
            counts["backward_tokens"] += tokens
            # The reference only grades the label (the dashboards' label accuracy).
            labels.correct[prompts[start]] = equivalent(v.label, reference[start])
            if v.label is None or v.share < rl.min_label_share:
                rewards += [0.0] * n
                continue
            rewards += v.rewards
            if len(set(v.rewards)) > 1:
                counts["signal_tokens"] += tokens
        return rewards

    class Budget(TrainerCallback):
        """Stops training at the wall-clock budget (checked after each optimizer step)."""

        def __init__(self) -> None:
            self.start = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if time.perf_counter() - self.start >= minutes * 60:
                control.should_training_stop = True

    sampling = cfg.engine.sampling
    config = GRPOConfig(
        output_dir=str(workdir / "trl"),
        use_cpu=True,
        seed=seed,
        num_generations=n,
        per_device_train_batch_size=ROUND_PROBLEMS * n // rl.mini_batches,
        steps_per_generation=rl.mini_batches,
        max_completion_length=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=1.0,
        top_k=0,
        beta=rl.kl_coef,
        epsilon=rl.clip_low,
        epsilon_high=rl.clip_high,
        loss_type="dapo",  # a step's token sum over its share of the round's tokens
        scale_rewards="group",
        max_grad_norm=rl.max_grad_norm,
        num_iterations=rl.ppo_epochs,
        num_train_epochs=10_000,  # the budget ends the run
        logging_steps=10_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    generating = [0.0]
    generate = model.generate

    def timed_generate(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return generate(*args, **kwargs)
        finally:
            generating[0] += time.perf_counter() - t0

    model.generate = timed_generate  # TRL samples through it (no vLLM, no DeepSpeed)
    optimizer = make_optimizer(model, rl)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=majority_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, make_schedule(optimizer, rl, 0)),
        callbacks=[budget := Budget()],
    )
    trainer.train()
    seconds = time.perf_counter() - budget.start
    steps = trainer.state.global_step
    final = workdir / "trl-final"
    trainer.model.save_pretrained(final)

    engine = load_engine(cfg.engine)
    engine.load_checkpoint(final, 1)
    labelled = [LabelledProblem(p.prompt, str(p.answer)) for p in tasks]
    after = evaluate(engine, labelled, n, replace(sampling, seed=seed), "TRL final")
    return {
        "threads": threads,
        "seconds": round(seconds, 1),
        "voted": counts["voted"],
        "updates": steps // rl.mini_batches,
        "trained_tokens": counts["signal_tokens"],
        "backward_tokens": counts["backward_tokens"],
        "train_seconds": round(seconds - generating[0], 1),
        "problems_seen": len(labels.correct),
        "label_accuracy": labels.accuracy(),
        "pass1": round(after.pass_at_1, 4),
        "maj": round(after.maj_at_n, 4),
        "greedy": round(after.greedy_accuracy, 4),
    }


def child(side: str, seed: int, minutes: float, problems: int, workdir: Path) -> None:
    run = ttrl_side if side == "ttrl" else trl_side
    result = run(seed, minutes, problems, workdir)
    result["peak_rss_gib"] = peak_rss_gib()
    print("RESULT " + json.dumps(result), flush=True)


def run_side(side: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    workdir = root / f"{side}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, str(HERE), "--child", side, "--seeds", str(seed)]
    command += ["--minutes", str(args.minutes), "--problems", str(args.problems)]
    command += ["--workdir", str(workdir)]
    log = root / f"{side}-seed{seed}.log"
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    lines = [line for line in log.read_text().splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(
            f"the {side} side of seed {seed} failed (exit {done.returncode}): see {log}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def rates(r: dict[str, Any]) -> dict[str, float]:
    minutes = r["seconds"] / 60
    return {
        "problems voted / min": r["voted"] / minutes,
        "GRPO updates / min": r["updates"] / minutes,
        "trained tokens / s": r["trained_tokens"] / r["seconds"],
        "peak RSS GiB": r["peak_rss_gib"],
        "label accuracy": r["label_accuracy"],
        "pass@1": r["pass1"],
        "maj@N": r["maj"],
        "greedy": r["greedy"],
    }


def report(seed: int, order: tuple[str, str], results: dict[str, dict[str, Any]]) -> dict:
    base = results["ttrl"]
    print(
        f"\nseed {seed} (ran {order[0]} then {order[1]}); base model: pass@1 "
        f"{base['pass1_before']:.3f}, maj@N {base['maj_before']:.3f}, greedy "
        f"{base['greedy_before']:.3f}"
    )
    figures = {side: rates(results[side]) for side in SIDES}
    print(f"  {'':24} {'ttrl':>10} {'TRL':>10} {'ttrl/TRL':>9}")
    ratios = {}
    for name in figures["ttrl"]:
        a, b = figures["ttrl"][name], figures["trl"][name]
        ratios[name] = a / b if b else math.inf
        points = f"  {100 * (a - b):+5.1f} points" if name in ACCURACIES else ""
        print(f"  {name:24} {a:10.3f} {b:10.3f} {ratios[name]:8.2f}x{points}")
    for side in SIDES:
        r = results[side]
        print(
            f"  {side}: {r['seconds']:.0f} s loop ({r['train_seconds']:.0f} s training, the "
            f"rest sampling and voting), {r['threads']} torch threads, {r['problems_seen']} "
            f"problems seen, {r['backward_tokens']} completion tokens through a backward"
        )
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 1-3 chose rl.mini_batch_split: the default seeds are ones nothing was tuned on.
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    parser.add_argument("--minutes", type=float, default=3.0, help="loop budget per side")
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", 0)) or len(os.sched_getaffinity(0)),
        help="torch threads of both sides (OMP_NUM_THREADS; default: it, else every core)",
    )
    parser.add_argument("--workdir", type=Path, help="default: a new temp dir (kept)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seeds[0], args.minutes, args.problems, args.workdir)
        return
    root = args.workdir or Path(tempfile.mkdtemp(prefix="ttrl-vs-trl-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.minutes:g} min per side, {args.problems} problems, {args.threads} torch threads "
        f"each; logs and runs in {root}"
    )
    all_ratios = []
    for i, seed in enumerate(args.seeds):
        order = SIDES if i % 2 == 0 else SIDES[::-1]
        results = {side: run_side(side, seed, args, root) for side in order}
        all_ratios.append(report(seed, order, results))
    if len(all_ratios) > 1:
        print(f"\nttrl / TRL over seeds {args.seeds}: mean (min - max)")
        for name in all_ratios[0]:
            values = [r[name] for r in all_ratios]
            mean = sum(values) / len(values)
            print(f"  {name:24} {mean:6.2f}x ({min(values):.2f} - {max(values):.2f})")


if __name__ == "__main__":
    main()
