"""Rollout spending: the adaptive pass policy and the selective sample buffer against the
fixed policy, on the demo's workload with an equal rollout budget (not equal time).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rollout_spending.py run --seed 11 --out DIR
    .venv/bin/python benchmarks/rollout_spending.py report --out DIR

``run`` plays each arm (``fixed``: daemon.passes.policy fixed, no buffer; ``adaptive``: the
adaptive pass policy; ``replay``: fixed passes with daemon.replay on) on the demo's problems
of one seed (every problem in the queue until the budget ends, as in ``ttrl demo``), stops
the daemon once ``--rollouts`` rollouts are stored, evaluates the newest version (greedy,
pass@1 and maj@16 at the sampling temperature) and writes ``DIR/<arm>-<seed>.json``. Run
seeds in parallel processes. ``report`` reads them all and prints, per seed:

- the daemon's answer accuracy (share of problems whose current answer is right; not yet
  answered counts as wrong) after every 1,000 rollouts, and pass@1 of the votes over the
  last sweep (the newest ``--problems`` votes);
- adaptive: the rollouts it took to reach the answer accuracy the fixed policy ends with,
  against the rollouts the fixed policy took to first reach it (the saving, a ratio);
- replay: the versions it took to reach the sweep pass@1 the fixed policy ends with, against
  the versions the fixed policy took (the saving, a ratio).
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import replace
from pathlib import Path
from statistics import mean

from sqlalchemy import Engine, func, select

from ttrl.config import load_settings
from ttrl.daemon.service import Service
from ttrl.db import make_engine, transaction
from ttrl.db.models import Problem, Vote
from ttrl.demo import DEMO_PASSES, EVAL_SAMPLES, demo_queue, set_threads
from ttrl.engines import load_engine
from ttrl.toy.evaluate import LabelledProblem, evaluate

ARMS = {
    "fixed": {},
    "adaptive": {"passes": {"policy": "adaptive"}},
    # Settles at 14 of 16 votes: more problems settle, a few more of them wrong.
    "adaptive-14of16": {"passes": {"policy": "adaptive", "settle_share": 0.875}},
    "replay": {"replay": {"enabled": True}},
}
MARK = 1000  # rollouts between two points of the curves


def run_arm(arm: str, seed: int, budget: int, n_problems: int, passes: int, out: Path) -> dict:
    base = load_settings()
    daemon = base.daemon.model_copy(
        update={
            "passes": base.daemon.passes.model_copy(update=ARMS[arm].get("passes", {})),
            "replay": base.daemon.replay.model_copy(update=ARMS[arm].get("replay", {})),
        }
    )
    cfg, problems = demo_queue(
        base.model_copy(update={"daemon": daemon}), seed, n_problems, out / f"{arm}-{seed}", passes
    )
    db = make_engine(cfg.db_url)
    service = Service(cfg)
    watcher = threading.Thread(target=_stop_at_budget, args=(service, db, budget), daemon=True)
    watcher.start()
    service.run()
    votes = _votes(db)
    db.dispose()

    engine = load_engine(cfg.engine)
    if service.version:
        newest = service.checkpoints.path(service.version)
        engine.load_checkpoint(newest, service.version)
    labelled = [LabelledProblem(p.prompt, str(p.answer)) for p in problems]
    sampling = replace(cfg.engine.sampling, seed=seed)
    report = evaluate(engine, labelled, EVAL_SAMPLES, sampling, f"{arm} v{service.version}")
    result = {
        "arm": arm,
        "seed": seed,
        "budget": budget,
        "problems": n_problems,
        "passes": passes,
        "versions": service.version,
        "votes": votes,
        "greedy": report.greedy_accuracy,
        "pass1": report.pass_at_1,
        "maj": report.maj_at_n,
    }
    (out / f"{arm}-{seed}.json").write_text(json.dumps(result))
    return result


def _stop_at_budget(service: Service, db: Engine, budget: int) -> None:
    """Stop the daemon once ``budget`` rollouts are stored or no problem is open."""
    while not service.stopping.wait(0.5):
        with transaction(db, write=False) as conn:
            stored = conn.execute(select(func.coalesce(func.sum(Vote.n), 0))).scalar_one()
            open_ = conn.execute(
                select(func.count()).where(Problem.status.in_(("queued", "claimed")))
            ).scalar_one()
        if stored >= budget or not open_:
            service.stopping.set()


def _votes(db: Engine) -> list[list]:
    """Every vote in the order stored: [problem id, rollouts, model version, label correct,
    pass@1]."""
    with transaction(db, write=False) as conn:
        rows = conn.execute(
            select(
                Vote.problem_id, Vote.n, Vote.model_version, Vote.label_correct, Vote.pass_at_1
            ).order_by(Vote.id)
        )
        return [list(row) for row in rows]


def curves(votes: list[list], n_problems: int, budget: int) -> list[dict]:
    """Per vote within the budget: rollouts so far, the answer accuracy over all problems,
    the version that voted, and pass@1 over the newest ``n_problems`` votes (a sweep)."""
    correct: dict[int, bool] = {}
    spent = 0
    points = []
    window: list[float] = []
    for problem, n, version, label_correct, pass1 in votes:
        if spent + n > budget:
            break
        spent += n
        correct[problem] = bool(label_correct)
        window = [*window[-(n_problems - 1) :], pass1]
        points.append(
            {
                "rollouts": spent,
                "answers": sum(correct.values()) / n_problems,
                "version": version,
                "sweep_pass1": mean(window) if len(window) == n_problems else None,
            }
        )
    return points


def first(points: list[dict], key: str, target: float, unit: str) -> int | None:
    """The ``unit`` (rollouts or version) of the first point whose ``key`` reaches ``target``."""
    return next((p[unit] for p in points if p[key] is not None and p[key] >= target), None)


def report(out: Path) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    by_seed: dict[int, dict[str, dict]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], {})[r["arm"]] = r
    savings: dict[str, list[float | None]] = {}
    for seed, arms in sorted(by_seed.items()):
        passes = ", ".join(str(p) for p in sorted({r["passes"] for r in arms.values()}))
        print(f"\n## seed {seed}, passes per problem {passes}")
        pts = {a: curves(r["votes"], r["problems"], r["budget"]) for a, r in arms.items()}
        marks = range(MARK, max(r["budget"] for r in arms.values()) + 1, MARK)
        print("answer accuracy after k rollouts (k in thousands):")
        print(f"{'arm':<16} " + " ".join(f"{k // MARK:>5}" for k in marks))
        for arm, points in pts.items():
            row = [_at(points, k, "answers") for k in marks]
            print(f"{arm:<16} " + " ".join("  -  " if v is None else f"{v:5.3f}" for v in row))
        print("pass@1 of the last sweep of votes after k rollouts:")
        for arm, points in pts.items():
            row = [_at(points, k, "sweep_pass1") for k in marks]
            print(f"{arm:<16} " + " ".join("  -  " if v is None else f"{v:5.3f}" for v in row))
        print("final version (eval, T as sampled, n=16): greedy / pass@1 / maj@16, versions")
        for arm, r in arms.items():
            used = pts[arm][-1]["rollouts"] if pts[arm] else 0
            print(
                f"{arm:<16} {r['greedy']:.3f} / {r['pass1']:.3f} / {r['maj']:.3f}, "
                f"{r['versions']} versions, {used} rollouts"
            )
        if "fixed" not in pts or not pts["fixed"]:
            continue
        fixed = pts["fixed"]
        target, p_target = fixed[-1]["answers"], fixed[-1]["sweep_pass1"]
        for arm, points in pts.items():
            if arm.startswith("adaptive"):
                r_fixed = first(fixed, "answers", target, "rollouts")
                r_arm = first(points, "answers", target, "rollouts")
                print(_saving(f"{arm}: rollouts to answers", target, r_arm, r_fixed, savings))
                end = points[-1]
                print(
                    f"  at the end: fixed {fixed[-1]['rollouts']} rollouts, answers "
                    f"{target:.3f}; {arm} {end['rollouts']} rollouts "
                    f"({end['rollouts'] / fixed[-1]['rollouts']:.2f}x), answers "
                    f"{end['answers']:.3f} ({end['answers'] - target:+.3f})"
                )
            elif arm.startswith("replay") and p_target is not None:
                v_fixed = first(fixed, "sweep_pass1", p_target, "version")
                v_arm = first(points, "sweep_pass1", p_target, "version")
                what = f"{arm}: versions to sweep pass@1"
                print(_saving(what, p_target, v_arm, v_fixed, savings))
    for arm, values in savings.items():
        reached = [v for v in values if v is not None]
        print(
            f"\n{arm}: reached the fixed policy's figure on {len(reached)} of {len(values)} "
            f"seeds; mean saving where reached {mean(reached):+.1%}"
            if reached
            else f"\n{arm}: never reached the fixed policy's figure ({len(values)} seeds)"
        )


def _saving(
    what: str,
    target: float,
    arm: int | None,
    fixed: int | None,
    savings: dict[str, list[float | None]],
) -> str:
    """One comparison line; the saving (None: never reached) joins ``savings``."""
    values = savings.setdefault(what.split(":")[0], [])
    if arm is None or fixed is None:
        values.append(None)
        return f"{what} {target:.3f}: fixed {fixed}, arm {arm} (never reached)"
    saving = 1 - arm / fixed
    values.append(saving)
    ratio = f"ratio {arm / fixed:.2f}, saving {saving:+.1%}"
    return f"{what} {target:.3f}: {arm} vs fixed {fixed} ({ratio})"


def _at(points: list[dict], rollouts: int, key: str) -> float | None:
    """``key`` at the newest point with at most ``rollouts`` spent (a run that stopped early,
    every problem settled, keeps its last figures)."""
    before = [p for p in points if p["rollouts"] <= rollouts]
    return before[-1][key] if before else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="play the arms on one seed")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    run.add_argument("--rollouts", type=int, default=16384, help="the budget of every arm")
    run.add_argument("--problems", type=int, default=256)
    run.add_argument(
        "--passes",
        type=int,
        default=DEMO_PASSES,
        help="passes each problem is enqueued with (default: the demo's, until the budget)",
    )
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--out", type=Path, required=True)
    rep = sub.add_parser("report", help="compare the arms of every seed in --out")
    rep.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "report":
        report(args.out)
        return
    set_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for arm in args.arms:
        run_arm(arm, args.seed, args.rollouts, args.problems, args.passes, args.out)


if __name__ == "__main__":
    main()
