"""Scale-out on one machine against the real PostgreSQL: `ttrl serve --role rollout` workers
and one `--role learner` (plain, or 2 DeepSpeed ranks under torchrun) as real processes on
the tiny model, coordinated only through the database and the shared checkpoint directory.

(a) 2 rollout workers + 1 learner answer 12 problems x 3 passes: every (problem, pass) voted
    once, every rollout trained on at most once and never staler than the bound, versions
    1..n chained, both workers end on the newest version.
(b) a rollout worker SIGKILLed while it holds claims: the other reclaims them after the lease.
(c) the learner as 2 ranks (torchrun, gloo, ZeRO-2): versions reach the rollout worker, and
    SIGTERM of torchrun leaves no process behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from serving import PLAIN_RL
from sqlalchemy import Engine, func, select
from toy_queue import enqueue_toy

from ttrl.db import make_engine, migrate, transaction
from ttrl.db.models import ModelVersion, Problem, Rollout, Vote, Worker

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BIN = Path(sys.executable).parent
TTRL = str(BIN / "ttrl")
DS_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "deepspeed" / "zero2.json"
VOTES = 4
UPDATE_EVERY = 3
MAX_GROUPS = 4
STALENESS = 1
LEASE_S = 10
START_TIMEOUT_S = 120.0  # three model loads at once on a busy 2-core machine


def write_config(tmp_path: Path, **rl: Any) -> Path:
    """One config for every role (as an operator would ship it): small and fast."""
    cfg = {
        "engine": {"sampling": {"temperature": 1.5, "max_new_tokens": 48}},
        "rl": {**PLAIN_RL, "lr": 1e-4, "warmup_steps": 0, "train_samples": None, **rl},
        "queue": {"claim_batch": 2, "lease_s": LEASE_S},
        "guard": {"enabled": False},
        "daemon": {
            "votes": VOTES,
            "update_every_groups": UPDATE_EVERY,
            "update_every_s": 3600,  # only B triggers updates: the test knows when they stop
            "max_groups_per_update": MAX_GROUPS,
            "max_staleness": STALENESS,
            "poll_s": 0.2,
            "version_poll_s": 0.5,
            "heartbeat_s": 0.5,
            "reap_every_s": 2,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "keep_checkpoints": 3,
            "grace_s": 30,
        },
    }
    path = tmp_path / "ttrl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_for(what: str, done: Callable[[], bool], timeout: float, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs()}")
        time.sleep(0.2)


def process_tree(root: int) -> set[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children[pid]
    return tree


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Fleet:
    """The processes of one test, each logging to its own file; all killed on the way out."""

    def __init__(self, db_url: str, config: Path, tmp_path: Path) -> None:
        self.config = config
        self.tmp = tmp_path
        self.env = {**os.environ, "TTRL_DB_URL": db_url, "OMP_NUM_THREADS": "1"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: set[int] = set()  # descendants seen (torchrun's ranks: own sessions)

    def start(self, name: str, role: str, launcher: tuple[str, ...] = ()) -> None:
        with (self.tmp / f"{name}.log").open("w") as out:
            self.procs[name] = subprocess.Popen(
                [*launcher, TTRL, "serve", "--config", str(self.config), "--role", role],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def logs(self) -> str:
        return "\n".join(f"===== {n}\n{self.log(n)[-3000:]}" for n in self.procs)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.logs()}"

    def wait_serving(self, names: list[str]) -> None:
        def serving() -> bool:
            self.alive()
            return all("serving version" in self.log(n) for n in names)

        wait_for("the processes to serve", serving, START_TIMEOUT_S, self.logs)

    def stop(self, names: list[str]) -> dict[str, int | None]:
        """SIGTERM, then the exit codes (None: still running after the timeout)."""
        for n in names:
            self.procs[n].send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for n in names:
            try:
                codes[n] = self.procs[n].wait(timeout=90)
            except subprocess.TimeoutExpired:
                codes[n] = None
        return codes

    def tree(self, name: str) -> set[int]:
        """The process ``name`` and its descendants, remembered for :meth:`kill_all`."""
        found = process_tree(self.procs[name].pid)
        self.pids |= found
        return found

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                self.pids |= process_tree(proc.pid)
        for pid in self.pids:
            if running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def fleet(fresh_pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    config = write_config(tmp_path)
    db = make_engine(fresh_pg_url)
    migrate.upgrade(db)
    db.dispose()
    f = Fleet(fresh_pg_url, config, tmp_path)
    try:
        yield f
    finally:
        f.kill_all()


def worker_id(db: Engine, pid: int) -> str:
    with transaction(db, write=False) as conn:
        return conn.execute(select(Worker.id).where(Worker.pid == pid)).scalar_one()


def open_problems(db: Engine) -> int:
    with transaction(db, write=False) as conn:
        return conn.execute(
            select(func.count()).select_from(Problem).where(Problem.status != "done")
        ).scalar_one()


def newest_active(db: Engine) -> int:
    with transaction(db, write=False) as conn:
        v = conn.execute(
            select(func.max(ModelVersion.version)).where(ModelVersion.status == "active")
        ).scalar()
    return v or 0


def learner_idle(db: Engine) -> bool:
    """Fewer fresh untrained groups than B wait: the learner has nothing left to do (an
    update in progress keeps its groups counted until it publishes)."""
    min_version = newest_active(db) - STALENESS
    with transaction(db, write=False) as conn:
        waiting = conn.execute(
            select(func.count(func.distinct(Rollout.vote_id))).where(
                Rollout.trained_in_version.is_(None), Rollout.model_version >= min_version
            )
        ).scalar_one()
    return waiting < UPDATE_EVERY


def worker_versions(db: Engine, ids: list[str]) -> list[int | None]:
    with transaction(db, write=False) as conn:
        rows = dict(conn.execute(select(Worker.id, Worker.model_version)).all())
    return [rows.get(i) for i in ids]


def assert_each_pass_voted_once(db: Engine, passes: int) -> list[Any]:
    """Every problem done, with exactly one vote per pass 0..passes-1; returns the votes."""
    with transaction(db, write=False) as conn:
        problems = conn.execute(select(Problem.__table__)).all()
        votes = conn.execute(select(Vote.__table__).order_by(Vote.id)).all()
        per_vote = dict(
            conn.execute(select(Rollout.vote_id, func.count()).group_by(Rollout.vote_id)).all()
        )
    by_problem: dict[int, list[int]] = defaultdict(list)
    for v in votes:
        by_problem[v.problem_id].append(v.pass_index)
        assert per_vote[v.id] == v.n == VOTES
    for p in problems:
        assert (p.status, p.passes_done, p.claimed_by) == ("done", passes, None), p
        assert sorted(by_problem[p.id]) == list(range(passes)), (p.id, by_problem[p.id])
    return votes


def consumed_by_skips(learner_log: str) -> Counter[int]:
    """Groups consumed by skipped updates (no new version), by the version they were marked
    with; the trainer's line names the version, the service's line that follows the count."""
    out: Counter[int] = Counter()
    at = None
    for line in learner_log.splitlines():
        if m := re.search(r"GRPO step skipped at version (\d+)", line):
            at = int(m.group(1))
        elif (m := re.search(r"update skipped .*; (\d+) groups consumed", line)) and at is not None:
            out[at] += int(m.group(1))
    return out


def test_two_rollout_workers_and_a_learner(fleet: Fleet, fresh_pg_url: str) -> None:
    problems, passes = 12, 3
    db = make_engine(fresh_pg_url)
    fleet.start("learner", "learner")
    fleet.start("rollout-a", "rollout")
    fleet.start("rollout-b", "rollout")
    fleet.wait_serving(["learner", "rollout-a", "rollout-b"])
    enqueue_toy(db, 11, problems, passes, "p")  # once all serve: both workers get their share
    rollouts = [worker_id(db, fleet.procs[n].pid) for n in ("rollout-a", "rollout-b")]

    def all_voted() -> bool:
        fleet.alive()
        return open_problems(db) == 0

    wait_for("every pass to be voted", all_voted, 150, fleet.logs)
    wait_for("the learner to finish its updates", lambda: learner_idle(db), 60, fleet.logs)
    newest = newest_active(db)
    # Versions propagate by NOTIFY (polling every 0.5 s at worst) plus a load.
    wait_for(
        f"both rollout workers to load version {newest}",
        lambda: worker_versions(db, rollouts) == [newest, newest],
        10,
        fleet.logs,
    )
    codes = fleet.stop(list(fleet.procs))
    assert codes == dict.fromkeys(fleet.procs, 0), fleet.logs()
    for name in fleet.procs:
        assert "Traceback" not in fleet.log(name), fleet.log(name)
    assert "HFEngine" not in fleet.log("learner")  # no guard: the learner loads no engine

    votes = assert_each_pass_voted_once(db, passes)
    assert {v.worker for v in votes} == set(rollouts)  # both voted; the learner never does
    for w in rollouts:  # a worker follows the learner forward, never back (no rollback here)
        own = [v.model_version for v in votes if v.worker == w]
        assert own == sorted(own), own
    with transaction(db, write=False) as conn:
        versions = conn.execute(select(ModelVersion.__table__).order_by(ModelVersion.version)).all()
        trained = conn.execute(
            select(
                Rollout.vote_id,
                func.count(func.distinct(Rollout.trained_in_version)),
                func.count(Rollout.trained_in_version),
                func.count(),
                func.min(Rollout.trained_in_version),
                func.min(Rollout.model_version),
            ).group_by(Rollout.vote_id)
        ).all()
        states = dict(conn.execute(select(Worker.id, Worker.state)).all())
    assert len(versions) >= 2, fleet.log("learner")  # else nothing was shown to propagate
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    assert [v.parent for v in versions] == list(range(len(versions)))
    assert [v.status for v in versions] == ["retired"] * (len(versions) - 1) + ["active"]
    assert newest == versions[-1].version
    assert all((Path(v.path) / "config.json").is_file() for v in versions[-3:])  # kept 3
    assert any(v.model_version > 0 for v in votes), "no vote by a version the learner made"
    assert all(s == "stopped" for s in states.values()), states

    parent = {v.version: v.parent for v in versions}
    consumed: Counter[int] = Counter()
    for vote_id, distinct, marked, total, version, oldest in trained:
        # All rollouts of a group are consumed together, by exactly one update.
        assert distinct <= 1 and marked in (0, total), (vote_id, distinct, marked, total)
        if version is None:
            continue
        consumed[version] += 1
        if version in parent:  # not staler than the bound when the update began
            assert oldest >= parent[version] - STALENESS, (vote_id, oldest, version)
    skips = consumed_by_skips(fleet.log("learner"))
    for v in versions:
        trained_groups = consumed[v.version] - skips[v.version]
        assert v.metrics["groups"] <= trained_groups <= MAX_GROUPS, (v.version, consumed, skips)
        assert v.metrics["staleness"] <= STALENESS, v.metrics
    assert sum(consumed.values()) >= sum(v.metrics["groups"] for v in versions)
    db.dispose()


def test_killed_rollout_worker_claims_are_reclaimed(fleet: Fleet, fresh_pg_url: str) -> None:
    problems, passes = 12, 2
    db = make_engine(fresh_pg_url)
    fleet.start("victim", "rollout")
    fleet.start("survivor", "rollout")
    fleet.wait_serving(["victim", "survivor"])
    enqueue_toy(db, 11, problems, passes, "p")
    victim = fleet.procs["victim"]
    victim_id, survivor_id = (worker_id(db, fleet.procs[n].pid) for n in ("victim", "survivor"))

    def victim_voted() -> bool:
        fleet.alive()
        with transaction(db, write=False) as conn:
            return bool(conn.execute(select(Vote.id).where(Vote.worker == victim_id)).first())

    wait_for("the victim's first vote", victim_voted, 60, fleet.logs)
    # Then freeze it when it holds claims, so they are still its own when it dies.
    held: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while not held:
        assert time.monotonic() < deadline, fleet.logs()
        fleet.alive()
        victim.send_signal(signal.SIGSTOP)
        with transaction(db, write=False) as conn:
            held = list(
                conn.execute(
                    select(Problem.id, Problem.passes_done).where(Problem.claimed_by == victim_id)
                ).all()
            )
        if not held:
            victim.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    victim.kill()
    assert victim.wait(timeout=10) == -signal.SIGKILL
    killed_at = time.monotonic()

    def all_voted() -> bool:
        assert fleet.procs["survivor"].poll() is None, fleet.log("survivor")
        return open_problems(db) == 0

    wait_for("the survivor to answer everything", all_voted, LEASE_S + 90, fleet.logs)
    assert time.monotonic() - killed_at >= LEASE_S * 0.5  # not before the lease could expire
    assert fleet.stop(["survivor"]) == {"survivor": 0}, fleet.log("survivor")
    assert re.search(r"reaped \d+ expired leases", fleet.log("survivor")), fleet.log("survivor")

    votes = assert_each_pass_voted_once(db, passes)
    by_pass = {(v.problem_id, v.pass_index): v.worker for v in votes}
    for problem_id, pass_index in held:
        assert by_pass[(problem_id, pass_index)] == survivor_id, (problem_id, pass_index)
    assert victim_id in by_pass.values()  # its votes from before the kill stand
    with transaction(db, write=False) as conn:
        state = conn.execute(select(Worker.state).where(Worker.id == victim_id)).scalar_one()
    assert state != "stopped"  # it died without a word: only its leases freed its work
    db.dispose()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs ttrl[deepspeed]")
def test_deepspeed_learner_with_two_ranks(fleet: Fleet, fresh_pg_url: str) -> None:
    torchrun = shutil.which("torchrun", path=str(BIN))
    assert torchrun, "torchrun is not in the venv"
    write_config(fleet.tmp, deepspeed_config=str(DS_CONFIG))  # the learner's ranks read it
    db = make_engine(fresh_pg_url)
    launcher = (torchrun, "--standalone", "--nproc_per_node", "2", "--no-python")
    fleet.start("learner", "learner", launcher)
    fleet.start("rollout", "rollout")
    fleet.wait_serving(["learner", "rollout"])
    enqueue_toy(db, 11, 24, 3, "p")
    rollout_id = worker_id(db, fleet.procs["rollout"].pid)
    tree = fleet.tree("learner")
    assert len(tree) >= 3, tree  # torchrun and its two ranks

    def loaded_two() -> bool:
        fleet.alive()
        newest = newest_active(db)
        return newest >= 2 and worker_versions(db, [rollout_id]) == [newest]

    wait_for("2 versions loaded by the rollout worker", loaded_two, 150, fleet.logs)
    # As ttrl-learner.service stops it (KillMode=mixed): SIGTERM to torchrun alone, which
    # forwards it once to each rank. Rank 0 drains and tells rank 1 (which ignores SIGTERM)
    # to stop. torchrun itself exits 1 after any forwarded signal: that is torch's design,
    # the unit's SuccessExitStatus=1 (docs/scale-out.md).
    codes = fleet.stop(["learner", "rollout"])
    assert codes == {"learner": 1, "rollout": 0}, fleet.logs()
    wait_for("the ranks to be gone", lambda: not any(map(running, tree)), 10, fleet.logs)
    log = fleet.log("learner")
    assert "rank 0 stopped; leaving" in log and "stopped: version" in log, log
    assert "second SIGTERM" not in log, log  # one signal: a drain, not an abort
    assert log.count("Traceback") == 1 and "got signal: 15" in log, log  # torchrun's only
    with transaction(db, write=False) as conn:
        versions = conn.execute(select(ModelVersion.version, ModelVersion.parent)).all()
        workers = conn.execute(select(Worker.role, Worker.state)).all()
    assert sorted(versions) == [(v, v - 1) for v in range(1, len(versions) + 1)]
    assert sorted(workers) == [("learner", "stopped"), ("rollout", "stopped")]  # rank 0 only
    db.dispose()


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None and not os.environ.get("CI"),
    reason="needs vLLM: make venv-vllm (CI fails instead)",
)
def test_a_vllm_rollout_worker_follows_the_learner(fleet: Fleet, fresh_pg_url: str) -> None:
    # Rollout hosts serve with vLLM (its CPU build here); the learner trains on their
    # rollouts, correcting by the logprobs they recorded.
    cfg = yaml.safe_load(fleet.config.read_text())
    cfg["engine"]["kind"] = "vllm"
    fleet.config.write_text(yaml.safe_dump(cfg))
    problems, passes = 8, 3
    db = make_engine(fresh_pg_url)
    fleet.start("learner", "learner")
    fleet.start("rollout", "rollout")
    fleet.wait_serving(["learner", "rollout"])
    enqueue_toy(db, 12, problems, passes, "v")
    rollout = worker_id(db, fleet.procs["rollout"].pid)

    def all_voted() -> bool:
        fleet.alive()
        return open_problems(db) == 0

    wait_for("every pass to be voted", all_voted, 180, fleet.logs)
    wait_for("the learner to finish its updates", lambda: learner_idle(db), 60, fleet.logs)
    newest = newest_active(db)
    wait_for(
        f"the vLLM worker to load version {newest}",
        lambda: worker_versions(db, [rollout]) == [newest],
        15,
        fleet.logs,
    )
    codes = fleet.stop(list(fleet.procs))
    assert codes == dict.fromkeys(fleet.procs, 0), fleet.logs()
    assert "VLLMEngine: now serving version" in fleet.log("rollout")
    assert all("Traceback" not in fleet.log(n) for n in fleet.procs), fleet.logs()
    assert_each_pass_voted_once(db, passes)
    with transaction(db, write=False) as conn:
        versions = conn.execute(select(ModelVersion.__table__)).all()
        logprobs = conn.execute(select(Rollout.token_ids, Rollout.logprobs)).all()
    assert newest >= 2 and len(versions) >= 2, fleet.log("learner")
    assert all(len(r.logprobs) == len(r.token_ids) for r in logprobs)
    assert all(v.metrics["is_tokens"] > 0 for v in versions), [v.metrics for v in versions]
    db.dispose()
