"""Scale-out on one machine: problems voted per minute with 1 and with 2 rollout workers
(`ttrl serve --role rollout`) against one learner (`--role learner`), the ratio of the two,
and the figures that size a fleet (docs/scale-out.md): sampled tokens/s per rollout worker
and trained tokens/s of the learner.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_out.py [--problems 96] [--repeat 1]
        [--db URL]

--db (default TTRL_TEST_PG_URL, else the local server's `test` database) is an admin URL:
each run creates its own database there and drops it afterwards. All processes start on an
empty queue; the clock starts when the problems are enqueued (every process serving) and
stops when every problem is voted. The collapse guard is off (its probes would be noise).
With --repeat K the 1- and 2-worker fleets alternate K times and the median run of each is
shown (a shared machine's load drifts).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.models import ModelVersion, Problem, Rollout, Vote, Worker
from ttrl.toy.task import generate_problems

TTRL = str(Path(sys.executable).with_name("ttrl"))
ADMIN_URL = os.environ.get("TTRL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@dataclass
class Run:
    """What one fleet did."""

    workers: int
    problems_per_min: float
    rollout_tokens_per_s: float  # sampled completion tokens per second, per worker
    trained_tokens_per_s: float | None  # the learner, while it trains (n_tokens / train_s)
    versions: int
    trained_share: float  # of the voted groups, the share updates consumed
    trained_fraction: float | None  # f: trained tokens / tokens of the groups consumed


def write_config(workdir: Path, args: argparse.Namespace) -> Path:
    cfg = {
        "engine": {"sampling": {"max_new_tokens": args.max_new_tokens}},
        "rl": {"train_samples": None},
        "queue": {"claim_batch": 4},
        "guard": {"enabled": False},
        "daemon": {
            "votes": args.votes,
            "update_every_groups": 8,
            "max_groups_per_update": 16,
            "poll_s": 0.1,
            "version_poll_s": 1.0,
            "checkpoint_dir": str(workdir / "checkpoints"),
        },
    }
    path = workdir / "ttrl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def serving(db: Engine, count: int) -> bool:
    with transaction(db, write=False) as conn:
        n = conn.execute(
            select(func.count()).select_from(Worker).where(Worker.state == "serving")
        ).scalar_one()
    return n == count


def fleet_rate(url: str, workers: int, args: argparse.Namespace, workdir: Path) -> Run:
    db = make_engine(url)
    migrate.upgrade(db)
    config = write_config(workdir, args)
    env = {**os.environ, "TTRL_DB_URL": url, "OMP_NUM_THREADS": "1"}
    roles = ["learner"] + ["rollout"] * workers
    procs = [
        subprocess.Popen(
            [TTRL, "serve", "--config", str(config), "--role", role],
            env=env,
            stdout=(workdir / f"{i}-{role}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for i, role in enumerate(roles)
    ]
    try:
        while not serving(db, len(procs)):
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a process exited early; see the logs in {workdir}")
            time.sleep(0.1)
        problems = generate_problems(args.seed, args.problems)
        with transaction(db) as conn:
            queue.enqueue(conn, [queue.NewProblem(p.prompt) for p in problems])
        start = time.perf_counter()
        while True:
            with transaction(db, write=False) as conn:
                left = conn.execute(
                    select(func.count()).select_from(Problem).where(Problem.status != "done")
                ).scalar_one()
            if not left:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=120)
    with transaction(db, write=False) as conn:
        sampled = conn.execute(select(func.sum(Vote.completion_tokens))).scalar_one()
        trained, train_s, versions = conn.execute(
            select(func.sum(ModelVersion.n_tokens), func.sum(ModelVersion.train_s), func.count())
        ).one()
        consumed, consumed_tokens = conn.execute(
            select(func.count(func.distinct(Rollout.vote_id)), func.sum(Rollout.n_tokens)).where(
                Rollout.trained_in_version.is_not(None)
            )
        ).one()
    db.dispose()
    return Run(
        workers=workers,
        problems_per_min=args.problems / elapsed * 60,
        rollout_tokens_per_s=float(sampled) / elapsed / workers,
        trained_tokens_per_s=float(trained) / train_s if train_s else None,
        versions=versions,
        trained_share=consumed / args.problems,
        trained_fraction=float(trained) / float(consumed_tokens) if versions else None,
    )


def measure(admin: Engine, workers: int, args: argparse.Namespace) -> Run:
    """One fleet on a database of its own, created and dropped here."""
    name = f"ttrl_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(args.db).set(database=name).render_as_string(hide_password=False)
        with tempfile.TemporaryDirectory() as tmp:
            return fleet_rate(url, workers, args, Path(tmp))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def median(runs: list[Run]) -> Run:
    """The run with the median problems per minute."""
    return sorted(runs, key=lambda r: r.problems_per_min)[len(runs) // 2]


def describe(run: Run) -> str:
    learner = (
        f"{run.trained_tokens_per_s:7.0f} trained tok/s"
        if run.trained_tokens_per_s
        else "no update"
    )
    return (
        f"{run.problems_per_min:7.1f} problems/min | {run.rollout_tokens_per_s:6.0f} sampled "
        f"tok/s per worker | learner {learner}, {run.versions} versions, "
        f"{run.trained_share:.0%} of the groups consumed by updates"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--problems", type=int, default=96)
    ap.add_argument("--votes", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs per fleet size")
    ap.add_argument("--db", default=ADMIN_URL, help="admin PostgreSQL URL")
    args = ap.parse_args()
    admin = make_engine(args.db, isolation_level="AUTOCOMMIT")
    runs: dict[int, list[Run]] = {1: [], 2: []}
    for _ in range(args.repeat):
        for n in runs:
            runs[n].append(measure(admin, n, args))
    admin.dispose()
    one, two = (median(runs[n]) for n in (1, 2))
    print(
        f"{args.problems} problems, {args.votes} votes each, <= {args.max_new_tokens} new "
        f"tokens; one learner; all on this machine; median of {args.repeat} run(s) each"
    )
    print(f"1 rollout worker  : {describe(one)}")
    print(f"2 rollout workers : {describe(two)}")
    print(
        f"ratio 2/1         : {two.problems_per_min / one.problems_per_min:7.2f}  "
        "(baseline: 1 worker = 1.00; ideal 2.00 when each worker has its own GPU)"
    )
    if one.trained_tokens_per_s and one.trained_fraction:
        n = one.trained_tokens_per_s / (one.rollout_tokens_per_s * one.trained_fraction)
        print(
            f"fleet size (1-worker run): N ~= learner trained tok/s / (sampled tok/s per worker"
            f" x f) = {one.trained_tokens_per_s:.0f} / ({one.rollout_tokens_per_s:.0f} x "
            f"{one.trained_fraction:.2f}) = {n:.1f}  (docs/scale-out.md)"
        )
    print(
        f"bound: this machine has {os.cpu_count()} CPU cores, and both workers and the learner "
        "compete for them, so the ratio measures the machine, not the queue"
    )


if __name__ == "__main__":
    main()
