"""Latency of every dashboard view on PostgreSQL: 100,000 problems x 3 model versions.

Seeds a scratch database with the shape a long run leaves behind (5 batches and a 2%
"canary" batch, 60% of the problems with a reference answer, 3 votes per problem, N=16
rollouts per vote with their texts pruned, 72 hours of history), then times the query a
dashboard panel sends to each view: median of --repeat runs after one warm-up, rows
fetched to the client.

Baselines, measured in the same run:
- each query again with migration 0002's ``ix_problems_batch_id`` dropped (inside a
  transaction that is rolled back), so the ratio (no index / with it) says what it buys;
- mean completion tokens per version read from the rollouts table, as it would be without
  0002's ``votes.completion_tokens``, next to the same figure from the votes.
The goal is every view under 200 ms.

    .venv/bin/python benchmarks/views.py [--problems 100000] [--votes 16] [--repeat 7]
    TTRL_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test (admin DB; a scratch
    database ttrl_bench_views is created, and dropped unless --keep; --reuse skips seeding
    when a kept one exists)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from ttrl.db import make_engine, migrate

GOAL_MS = 200.0
DB = "ttrl_bench_views"
INDEX = "ix_problems_batch_id"

# (label, SQL a dashboard panel sends)
QUERIES = (
    ("v_accuracy_by_version", "SELECT * FROM v_accuracy_by_version ORDER BY model_version"),
    ("v_accuracy_by_version_batch", "SELECT * FROM v_accuracy_by_version_batch"),
    (
        "v_accuracy_by_version_batch, one batch",
        "SELECT * FROM v_accuracy_by_version_batch WHERE batch = 'b3' ORDER BY model_version",
    ),
    ("v_queue", "SELECT * FROM v_queue"),
    ("v_throughput_hourly", "SELECT * FROM v_throughput_hourly ORDER BY hour"),
    ("v_versions", "SELECT * FROM v_versions ORDER BY version"),
    ("v_workers", "SELECT * FROM v_workers"),
    (
        "v_answers, a batch page of 1000",
        "SELECT * FROM v_answers WHERE batch = 'b3' ORDER BY problem_id LIMIT 1000",
    ),
    (
        "v_answers, a 2% batch whole (export)",
        "SELECT * FROM v_answers WHERE batch = 'canary' AND answer_version IS NOT NULL "
        "ORDER BY problem_id",
    ),
    ("v_answers, one problem", "SELECT * FROM v_answers WHERE problem_id = 54321"),
    (
        "v_answer_history, one problem",
        "SELECT * FROM v_answer_history WHERE problem_id = 54321 ORDER BY pass_index",
    ),
)

TOKENS_FROM_VOTES = (
    "SELECT model_version, sum(completion_tokens)::float8 / sum(n) FROM votes "
    "GROUP BY model_version"
)
TOKENS_FROM_ROLLOUTS = "SELECT model_version, avg(n_tokens) FROM rollouts GROUP BY model_version"


def seed(conn: Connection, problems: int, versions: int, votes: int) -> None:
    """Bulk rows of the daemon's shape, written by SQL (300k record_vote calls would take
    longer than the measurement)."""
    t = "timestamp '2026-03-01' + "
    conn.execute(
        text(f"""
        INSERT INTO problems (id, external_id, batch, prompt, reference_answer, status,
            passes_wanted, passes_done, answer, answer_share, answer_version, created_at,
            updated_at)
        SELECT g, 'ext-' || g, CASE WHEN g % 50 = 7 THEN 'canary' ELSE 'b' || (g % 5) END,
            repeat('Let x be a real number such that the following holds. ', 8) || g,
            CASE WHEN g % 5 < 3 THEN (g % 97)::text END,
            CASE WHEN g % 50 = 0 THEN 'queued' WHEN g % 50 = 1 THEN 'claimed'
                 WHEN g % 200 = 2 THEN 'failed' ELSE 'done' END,
            {versions}, {versions}, (g % 97)::text, 0.25 + (g % 70) / 100.0, {versions - 1},
            {t} (g % 4320) * interval '1 minute',
            {t} interval '72 hours' - (g % 600) * interval '1 second'
        FROM generate_series(1, :n) g"""),
        {"n": problems},
    )
    conn.execute(
        text(
            "UPDATE problems SET lease_until = timestamp '2026-03-01', claimed_by = 'w0' "
            "WHERE status = 'claimed'"
        )
    )
    conn.execute(
        text(f"""
        INSERT INTO votes (id, problem_id, pass_index, model_version, n, label, label_key,
            share, n_distinct, tie, label_correct, reward_accuracy, pass_at_1, worker,
            created_at)
        SELECT (p - 1) * {versions} + v + 1, p, v, v, {votes},
            CASE WHEN p % 23 = 0 THEN NULL ELSE ((p + v) % 97)::text END,
            CASE WHEN p % 23 = 0 THEN NULL ELSE 'num:' || ((p + v) % 97) END,
            CASE WHEN p % 23 = 0 THEN 0 ELSE 0.2 + ((p * 7 + v) % 80) / 100.0 END,
            1 + (p + v) % 6, (p + v) % 11 = 0,
            CASE WHEN p % 5 < 3 THEN (p + v) % 3 > 0 END,
            CASE WHEN p % 5 < 3 THEN ((p + v) % 100) / 100.0 END,
            CASE WHEN p % 5 < 3 THEN ((p * 3 + v) % 100) / 100.0 END,
            'w' || (p % 4),
            {t} (v * 24) * interval '1 hour' + (p % 86400) * interval '1 second'
        FROM generate_series(1, :n) p, generate_series(0, {versions - 1}) v"""),
        {"n": problems},
    )
    conn.execute(
        text(f"""
        INSERT INTO rollouts (problem_id, vote_id, model_version, n_tokens, finish_reason,
            raw_answer, answer_key, reward, trained_in_version, created_at)
        SELECT (vid - 1) / {versions} + 1, vid, (vid - 1) % {versions},
            50 + (vid * 31 + k * 17) % 900, 'stop', (k % 7)::text, 'num:' || (k % 7),
            (k % 3 = 0)::int, (vid - 1) % {versions} + 1, timestamp '2026-03-01'
        FROM generate_series(1, :nv) vid, generate_series(1, {votes}) k"""),
        {"nv": problems * versions},
    )
    conn.execute(
        text(
            "UPDATE votes SET completion_tokens = s.t FROM (SELECT vote_id, sum(n_tokens) "
            "AS t FROM rollouts GROUP BY vote_id) s WHERE votes.id = s.vote_id"
        )
    )
    for v in range(1, versions):
        conn.execute(
            text(f"""
            INSERT INTO model_versions (version, parent, created_at, path, status, loss,
                n_groups, n_tokens, train_s, swap_s)
            VALUES ({v}, {v - 1}, {t} interval '{24 * v} hours', '/ckpt/v{v}',
                '{"active" if v == versions - 1 else "retired"}', 0.1, 512, 4000000, 600, 3)""")
        )
    conn.execute(
        text(f"""
        INSERT INTO workers (id, host, pid, role, state, started_at, heartbeat_at)
        SELECT 'w' || i, 'gpu-' || i, 1000 + i, 'all', 'serving', {t} interval '1 hour',
            (now() AT TIME ZONE 'utc') - i * interval '5 seconds'
        FROM generate_series(0, 3) i""")
    )


def median_ms(conn: Connection, sql: str, repeat: int) -> tuple[float, int]:
    rows = len(conn.execute(text(sql)).all())  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        conn.execute(text(sql)).all()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--problems", type=int, default=100_000)
    ap.add_argument("--versions", type=int, default=3)
    ap.add_argument("--votes", type=int, default=16, help="rollouts per vote (N)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept scratch database")
    args = ap.parse_args()

    admin_url = os.environ.get("TTRL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    url = make_url(admin_url).set(database=DB).render_as_string(False)
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DB})
        reuse = args.reuse and exists.first() is not None
        if not reuse:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {DB}"))
    engine = make_engine(url)
    if not reuse:
        t0 = time.perf_counter()
        migrate.upgrade(engine)
        with engine.begin() as conn:
            seed(conn, args.problems, args.versions, args.votes)
        with make_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
        print(f"seeded in {time.perf_counter() - t0:.0f}s")

    with engine.connect() as conn:
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("problems", "votes", "rollouts")
        }
        server = conn.execute(text("SHOW server_version")).scalar_one()
        jit = conn.execute(text("SHOW jit")).scalar_one()
        print(
            f"PostgreSQL {server} (jit {jit}), {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}; " + ", ".join(f"{n:,} {t}" for t, n in counts.items())
        )
        print(
            f"{'query':<42}{'rows':>7}{'ms':>9}{'no index ms':>13}{'ratio':>7}"
            f"  goal {GOAL_MS:.0f} ms"
        )
        for label, sql in QUERIES:
            ms, rows = median_ms(conn, sql, args.repeat)
            conn.commit()
            conn.execute(text(f"DROP INDEX {INDEX}"))  # PostgreSQL DDL is transactional:
            base, _ = median_ms(conn, sql, args.repeat)
            conn.rollback()  # the index is back
            verdict = "ok" if ms < GOAL_MS else "OVER"
            print(f"{label:<42}{rows:>7}{ms:>9.1f}{base:>13.1f}{base / ms:>7.2f}  {verdict}")
        votes_ms, _ = median_ms(conn, TOKENS_FROM_VOTES, args.repeat)
        rollouts_ms, _ = median_ms(conn, TOKENS_FROM_ROLLOUTS, args.repeat)
        print(
            f"mean completion tokens per version: {votes_ms:.1f} ms from votes, "
            f"{rollouts_ms:.1f} ms from rollouts (ratio {rollouts_ms / votes_ms:.2f})"
        )
    engine.dispose()
    if not args.keep:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
    admin.dispose()


if __name__ == "__main__":
    main()
