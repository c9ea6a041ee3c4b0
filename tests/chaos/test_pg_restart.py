"""PostgreSQL goes away under a working `ttrl serve` and comes back: the daemon must live on.

The test runs its own PostgreSQL server (initdb into a temp dir, a free port, as the
``postgres`` OS user), so stopping it (``pg_ctl stop -m immediate``, a crash as far as the
clients can tell) hurts no one else. The daemon lives through two outages, each starting
while it samples a claimed batch: one shorter than the lease (the batch's votes, kept in
memory, must be written when the database returns) and one longer (the lease runs out; the
votes are written or the batch redone). Then it must finish every problem: one vote per pass,
nothing stuck claimed, no traceback in the log, and exit 0 on SIGTERM. The longer outage
outlasts ``daemon.outage_alert_s``: the log must then say so as an error.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from serving import PLAIN_RL
from sqlalchemy import func, select
from toy_queue import enqueue_toy

from ttrl.db import make_engine, migrate, transaction
from ttrl.db.models import Problem, Rollout, Vote

TTRL = str(Path(sys.executable).with_name("ttrl"))
PG_BIN = Path(os.environ.get("TTRL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
VOTES = 4
PROBLEMS = 16
PASSES = 2
LEASE_S = 15.0
OUTAGES_S = (8.0, 20.0)  # shorter, then longer than the lease
ALERT_S = 12.0  # daemon.outage_alert_s: only the longer outage must raise the alarm
OUTAGE_LOG = re.compile(r"database (unavailable|unreachable)", re.IGNORECASE)


class PrivateServer:
    """A throw-away PostgreSQL cluster owned by the ``postgres`` OS user."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _pg(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        data = str(self.data)
        self._pg("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self._pg("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def crash(self) -> None:
        """Stop at once: connections cut, no checkpoint (recovery runs at the next start)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_pg() -> Iterator[PrivateServer]:
    """A running private server; skipped (failed under CI=true) where one cannot be made."""
    missing = [
        why
        for why, bad in [
            (f"{PG_BIN / 'initdb'} not found", not (PG_BIN / "initdb").is_file()),
            ("runuser not found", shutil.which("runuser") is None),
            ("not root (runuser -u postgres needs it)", os.geteuid() != 0),
        ]
        if bad
    ]
    if missing:
        reason = "private PostgreSQL server: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="ttrl-pg-"))
    shutil.chown(root, "postgres", "postgres")
    server = PrivateServer(root, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.crash()
        shutil.rmtree(root, ignore_errors=True)


def write_config(workdir: Path) -> Path:
    cfg = {
        "engine": {"sampling": {"temperature": 1.5, "max_new_tokens": 40}},
        "rl": {**PLAIN_RL, "lr": 1e-4, "warmup_steps": 0, "train_samples": None},
        "queue": {"claim_batch": 2, "lease_s": LEASE_S},
        "daemon": {
            "votes": VOTES,
            "update_every_groups": 2,
            "poll_s": 0.2,
            "reap_every_s": 1.0,
            "heartbeat_s": 1.0,
            "checkpoint_dir": str(workdir / "checkpoints"),
            "grace_s": 30,
            "outage_alert_s": ALERT_S,
        },
    }
    path = workdir / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_daemon_survives_postgres_restarts(private_pg: PrivateServer, tmp_path: Path) -> None:
    db = make_engine(private_pg.url)
    migrate.upgrade(db)
    enqueue_toy(db, 11, PROBLEMS, PASSES, "pg")

    def voted() -> int:
        with transaction(db, write=False) as conn:
            return conn.execute(select(func.count()).select_from(Vote)).scalar_one()

    def claimed() -> int:
        with transaction(db, write=False) as conn:
            return conn.execute(
                select(func.count()).select_from(Problem).where(Problem.status == "claimed")
            ).scalar_one()

    def alive_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert proc.poll() is None, f"the daemon exited:\n{log.read_text()}"
            time.sleep(0.2)

    env = {**os.environ, "TTRL_DB_URL": private_pg.url, "OMP_NUM_THREADS": "1"}
    env.pop("TTRL_CRASH_AT", None)
    log = tmp_path / "serve.log"
    t_start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [TTRL, "serve", "--config", str(write_config(tmp_path))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    recovered_s: list[float] = []
    in_flight: list[int] = []
    try:
        for outage in OUTAGES_S:
            before = voted()
            deadline = time.monotonic() + 90
            # Cut the database while the daemon samples a claimed batch (after it stored some
            # votes): the batch's votes then have to wait in memory for the database.
            while voted() < before + 2 or not (n := claimed()):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            private_pg.crash()
            in_flight.append(n)
            alive_for(outage)
            private_pg.start()
            back = time.monotonic()
            after = voted()
            while voted() <= after:  # writes again
                assert time.monotonic() < back + 60, log.read_text()
                alive_for(0.2)
            recovered_s.append(time.monotonic() - back)
        deadline = time.monotonic() + 90
        while True:
            with transaction(db, write=False) as conn:
                open_ = conn.execute(
                    select(func.count()).select_from(Problem).where(Problem.status != "done")
                ).scalar_one()
            if not open_ or time.monotonic() > deadline:
                break
            alive_for(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()

    with transaction(db, write=False) as conn:
        problems = conn.execute(select(Problem.__table__)).all()
        votes = conn.execute(select(Vote.__table__)).all()
        rollouts = dict(
            conn.execute(select(Rollout.vote_id, func.count()).group_by(Rollout.vote_id)).all()
        )
    db.dispose()
    pairs = [(v.problem_id, v.pass_index) for v in votes]
    duplicates = len(pairs) - len(set(pairs))
    not_done = [p.external_id for p in problems if p.status != "done"]
    recovered = [round(s, 1) for s in recovered_s]
    print(
        f"\n[postgresql restart] outages survived {list(OUTAGES_S)}s "
        f"(longest {max(OUTAGES_S):.0f}s) with {in_flight} problems claimed; "
        f"writing again {recovered}s after each restart; "
        f"problems not done {len(not_done)}, duplicate votes {duplicates}, "
        f"tracebacks logged {output.count('Traceback')}; "
        f"{time.monotonic() - t_start:.0f}s in all"
    )
    assert len(OUTAGE_LOG.findall(output)) >= len(OUTAGES_S), output  # it saw the outages
    alarms = [line for line in output.splitlines() if "ERROR" in line and "UNREACHABLE" in line]
    assert alarms, f"no alarm after {ALERT_S}s without the database:\n{output}"
    # An outage is reported in plain lines, not by a traceback per scheduled job and second.
    assert "Traceback" not in output, output
    assert duplicates == 0
    assert not_done == [], f"not done: {not_done}\n{output}"
    for p in problems:
        own = sorted(v.pass_index for v in votes if v.problem_id == p.id)
        assert own == list(range(PASSES)) and p.passes_done == PASSES, p.external_id
        assert p.claimed_by is None and p.lease_until is None
    assert all(rollouts.get(v.id) == v.n == VOTES for v in votes)
