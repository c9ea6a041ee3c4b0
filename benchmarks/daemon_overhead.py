"""The daemon's own overhead: problems voted per minute through `ttrl serve` (updates off)
against the bare engine sampling the same problems in a loop, measured in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/daemon_overhead.py [--problems 96]

The daemon's clock starts when its worker row says "serving" (the model is loaded) and stops
when every problem is done; the bare loop calls `engine.generate` on the same batches
(`queue.claim_batch` prompts, `daemon.votes` samples each) with the same settings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from ttrl.config import load_settings
from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.models import Problem, Worker
from ttrl.db.queue import NewProblem
from ttrl.engines import load_engine
from ttrl.toy.task import generate_problems


def bare_rate(prompts: list[str]) -> float:
    cfg = load_settings()
    engine = load_engine(cfg.engine)
    k = cfg.queue.claim_batch
    start = time.perf_counter()
    for i in range(0, len(prompts), k):
        engine.generate(prompts[i : i + k], cfg.daemon.votes, cfg.engine.sampling)
    return len(prompts) / (time.perf_counter() - start) * 60


def daemon_rate(prompts: list[str], workdir: Path) -> float:
    url = f"sqlite:///{workdir / 'ttrl.db'}"
    db = make_engine(url)
    migrate.upgrade(db)
    with transaction(db) as conn:
        queue.enqueue(conn, [NewProblem(p) for p in prompts])
    env = {
        **os.environ,
        "TTRL_DB_URL": url,
        "TTRL_DAEMON__UPDATES": "false",
        "TTRL_DAEMON__POLL_S": "0.05",
    }
    ttrl = str(Path(sys.executable).with_name("ttrl"))
    proc = subprocess.Popen(
        [ttrl, "serve"], env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:  # wait for the model to load
            with transaction(db, write=False) as conn:
                state = conn.execute(select(Worker.state)).scalar()
            if state == "serving":
                break
            time.sleep(0.01)
        start = time.perf_counter()
        while True:
            with transaction(db, write=False) as conn:
                done = conn.execute(
                    select(func.count()).where(Problem.status == "done")
                ).scalar_one()
            if done == len(prompts):
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        db.dispose()
    return len(prompts) / elapsed * 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--problems", type=int, default=96)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    prompts = [p.prompt for p in generate_problems(args.seed, args.problems)]
    bare = bare_rate(prompts)
    with tempfile.TemporaryDirectory() as tmp:
        served = daemon_rate(prompts, Path(tmp))
    print(f"{args.problems} problems, {load_settings().daemon.votes} votes each")
    print(f"bare engine loop : {bare:8.1f} problems/min")
    print(f"ttrl serve       : {served:8.1f} problems/min")
    print(f"ratio            : {served / bare:8.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
