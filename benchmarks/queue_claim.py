"""Claim throughput of the problem queue, against a bare `SELECT 1` round-trip loop.

For SQLite and PostgreSQL, with 1 and 8 claimer processes: fill the queue, let every claimer
claim batches of --batch until it is empty, and report problems claimed per second. The
baseline is the rate of `SELECT 1` transactions on the same connections, measured right
before in the same processes: the ratio says how many problems one claim round-trip moves.

    .venv/bin/python benchmarks/queue_claim.py [--problems 20000] [--batch 32]
    TTRL_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test (admin DB; a scratch
    database ttrl_bench is created and dropped)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.queue import NewProblem

BASELINE_S = 1.0


def claimer(url: str, worker: str, batch: int, start: mp.Barrier, results: mp.Queue) -> None:
    engine = make_engine(url)
    with engine.connect() as conn:  # warm the connection, then time the bare round trip
        conn.execute(text("SELECT 1"))
    n_select, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < BASELINE_S:
        with transaction(engine, write=False) as conn:
            conn.execute(text("SELECT 1")).scalar()
        n_select += 1
    select_rate = n_select / (time.perf_counter() - t0)

    start.wait()
    claimed, t0 = 0, time.perf_counter()
    while True:
        with transaction(engine) as conn:
            got = queue.claim(conn, batch, worker, lease_s=600)
        if not got:
            break
        claimed += len(got)
    results.put((claimed, time.perf_counter() - t0, select_rate))
    engine.dispose()


def run(url: str, n_claimers: int, n_problems: int, batch: int) -> tuple[float, float]:
    engine = make_engine(url)
    migrate.downgrade(engine, "base")
    migrate.upgrade(engine)
    with transaction(engine) as conn:
        queue.enqueue(conn, (NewProblem(f"problem {i}") for i in range(n_problems)))
    engine.dispose()

    start, results = mp.Barrier(n_claimers + 1), mp.Queue()
    procs = [
        mp.Process(target=claimer, args=(url, f"w{i}", batch, start, results))
        for i in range(n_claimers)
    ]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    outs = [results.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    total = sum(o[0] for o in outs)
    assert total == n_problems, f"claimed {total} of {n_problems}"
    return total / wall, sum(o[2] for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--problems", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--claimers", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()

    admin_url = os.environ.get("TTRL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS ttrl_bench WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE ttrl_bench"))
    pg_url = make_url(admin_url).set(database="ttrl_bench").render_as_string(False)

    print(f"{os.cpu_count()} CPUs; {args.problems} problems; claims of {args.batch}")
    print(f"{'database':<11}{'claimers':>9}{'problems/s':>13}{'SELECT 1/s':>13}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        dbs = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}"), ("postgresql", pg_url)]
        for name, url in dbs:
            for n in args.claimers:
                rate, select_rate = run(url, n, args.problems, args.batch)
                print(
                    f"{name:<11}{n:>9}{rate:>13,.0f}{select_rate:>13,.0f}{rate / select_rate:>8.2f}"
                )
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS ttrl_bench WITH (FORCE)"))
    admin.dispose()


if __name__ == "__main__":
    main()
