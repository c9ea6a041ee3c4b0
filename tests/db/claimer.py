"""A claiming worker run as its own process by the concurrency and lease tests.

usage: claimer.py DB_URL WORKER_ID OUT_FILE MODE
MODE drain: create OUT_FILE.ready, wait for a file named "go" next to OUT_FILE (so that all
  workers start claiming together, not one by one as their interpreters finish starting), then
  claim batches of 32 until the queue is empty, pausing SAMPLING_S after each; for each
  claim write a vote row (unique per problem and pass) and complete the pass in the same
  transaction; append "problem_id pass_index" lines to OUT_FILE.
MODE die: claim 5 problems with a 1 s lease, write their ids to OUT_FILE, then hang
  (the test kills it; it never renews).
"""

import sys
import time
from pathlib import Path

from sqlalchemy import insert

from ttrl.db import make_engine, queue, transaction, utcnow
from ttrl.db.models import Vote

SAMPLING_S = 0.01


def drain(url: str, worker: str, out_path: str) -> None:
    engine = make_engine(url)
    with engine.connect():
        pass  # connect before the start line
    Path(out_path + ".ready").touch()
    go = Path(out_path).with_name("go")
    while not go.exists():
        time.sleep(0.01)
    with open(out_path, "w") as out:
        while True:
            with transaction(engine) as conn:
                claimed = queue.claim(conn, 32, worker, lease_s=300)
            if not claimed:
                return
            with transaction(engine) as conn:
                now = utcnow()
                conn.execute(
                    insert(Vote),
                    [
                        dict(
                            problem_id=c.id,
                            pass_index=c.passes_done,
                            model_version=0,
                            n=1,
                            share=1.0,
                            n_distinct=1,
                            tie=False,
                            worker=worker,
                            created_at=now,
                        )
                        for c in claimed
                    ],
                )
                for c in claimed:
                    queue.complete_pass(conn, c.id, worker, answer=worker, share=1.0, version=0)
            out.write("".join(f"{c.id} {c.passes_done}\n" for c in claimed))
            # A real worker samples for seconds between claims. With no pause at all, SQLite's
            # busy handler (waiters poll, the holder re-locks at once) let one process keep the
            # write lock for the whole drain (seen in CI: the others claimed nothing).
            time.sleep(SAMPLING_S)


def die(url: str, worker: str, out_path: str) -> None:
    engine = make_engine(url)
    with transaction(engine) as conn:
        claimed = queue.claim(conn, 5, worker, lease_s=1)
    with open(out_path, "w") as out:
        out.write("".join(f"{c.id}\n" for c in claimed))
    time.sleep(3600)


if __name__ == "__main__":
    url, worker, out_path, mode = sys.argv[1:5]
    {"drain": drain, "die": die}[mode](url, worker, out_path)
