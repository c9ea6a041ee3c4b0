"""`ttrl serve` as a real process on the shipped tiny model, on SQLite and PostgreSQL, with
each engine (HFEngine, and vLLM's CPU build): it answers the queue, trains at least two
versions that the engine swaps in place, records the engine's logprobs for the
importance-sampling correction, stops cleanly on SIGTERM and resumes."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from serving import PLAIN_RL, TTRL, serve_until
from sqlalchemy import func, select

from ttrl.db import make_engine, transaction
from ttrl.db.models import ModelVersion, Problem, Rollout, Vote, Worker

VOTES = 6
ENGINES = [
    "hf",
    pytest.param(
        "vllm",
        marks=pytest.mark.skipif(
            find_spec("vllm") is None and not os.environ.get("CI"),
            reason="needs vLLM: make venv-vllm (CI fails instead)",
        ),
    ),
]


def write_config(tmp_path: Path, engine_kind: str = "hf") -> Path:
    cfg = {
        "engine": {"kind": engine_kind, "sampling": {"temperature": 1.3, "max_new_tokens": 64}},
        "rl": {**PLAIN_RL, "lr": 1e-4, "warmup_steps": 0},
        "queue": {"claim_batch": 4, "lease_s": 60},
        "daemon": {
            "votes": VOTES,
            "update_every_groups": 3,
            "poll_s": 0.2,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "keep_checkpoints": 2,
            "grace_s": 60,
        },
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TTRL, *args], env=env, capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("engine_kind", ENGINES)
def test_serve_learns_and_stops_cleanly(db_url: str, tmp_path: Path, engine_kind: str) -> None:
    env = {**os.environ, "TTRL_DB_URL": db_url, "OMP_NUM_THREADS": "1"}
    config = write_config(tmp_path, engine_kind)
    assert run("db", "upgrade", env=env).returncode == 0
    toy = run("toy", "problems", "--seed", "123", "--count", "40", env=env).stdout.splitlines()
    # Several passes each, so the daemon keeps voting (and training) until it is stopped.
    problems = "".join(json.dumps({**json.loads(line), "passes": 50}) + "\n" for line in toy)
    # One prompt longer than the model's context: it must fail alone, not take the rest down.
    problems += '{"id": "too-long", "prompt": "What is ' + "1 + " * 300 + '1?", "priority": 1}\n'
    r = run("enqueue", "-", "--batch", "e2e", env=env, input=problems)
    assert r.returncode == 0, r.stderr

    db = make_engine(db_url)

    def two_versions(_log: str) -> bool:
        with transaction(db, write=False) as conn:
            return conn.execute(select(func.count()).select_from(ModelVersion)).scalar() >= 2

    output = serve_until(config, env, tmp_path / "serve.log", two_versions, 300)
    assert "SIGTERM received" in output and "Traceback" not in output
    assert {"hf": "HFEngine:", "vllm": "VLLMEngine:"}[engine_kind] in output

    with transaction(db, write=False) as conn:
        # Nothing left claimed: the batch in flight was finished or released.
        assert (
            conn.execute(
                select(func.count()).select_from(Problem).where(Problem.status == "claimed")
            ).scalar()
            == 0
        )
        too_long = conn.execute(
            select(Problem.status, Problem.last_error).where(Problem.external_id == "too-long")
        ).one()
        assert too_long.status == "failed" and "generation failed" in too_long.last_error
        votes = conn.execute(select(Vote.__table__)).all()
        assert votes, "no vote was stored"
        for v in votes:
            rollouts = conn.execute(select(Rollout.reward).where(Rollout.vote_id == v.id)).all()
            assert len(rollouts) == v.n == VOTES
            assert sum(r.reward for r in rollouts) == pytest.approx(v.share * v.n)
            assert v.label_correct is not None  # toy problems carry reference answers
        voted = conn.execute(select(Problem.__table__).where(Problem.passes_done > 0)).all()
        assert voted
        for p in voted:
            own = [v for v in votes if v.problem_id == p.id]
            assert sorted(v.pass_index for v in own) == list(range(p.passes_done))
            newest = max(own, key=lambda v: v.pass_index)
            assert (p.answer, p.answer_version) == (newest.label, newest.model_version)
        versions = conn.execute(select(ModelVersion.__table__).order_by(ModelVersion.version)).all()
        assert [v.version for v in versions] == list(range(1, len(versions) + 1))
        assert [v.parent for v in versions] == list(range(len(versions)))
        assert [v.status for v in versions][-1] == "active"
        assert all(v.status == "retired" for v in versions[:-1])
        assert all(v.train_s and v.swap_s is not None and v.n_tokens for v in versions)
        # The correction saw the engine's logprobs of the trainer's own (or a one-version
        # old) policy: ratios near 1, never wild.
        for v in versions:
            assert v.metrics["is_tokens"] > 0 and 0.8 < v.metrics["is_ratio_mean"] < 1.25
        sampled = conn.execute(select(Rollout.token_ids, Rollout.logprobs)).all()
        assert all(len(r.logprobs) == len(r.token_ids) for r in sampled)
        assert all(lp <= 0.0 for r in sampled for lp in r.logprobs)
        newest_path = Path(versions[-1].path)
        assert (newest_path / "config.json").is_file()
        assert len(list((tmp_path / "checkpoints").iterdir())) <= 2  # keep_checkpoints
        trained = conn.execute(select(func.max(Rollout.trained_in_version))).scalar()
        assert trained == versions[-1].version
        worker = conn.execute(select(Worker.__table__)).one()
        assert worker.state == "stopped"
    db.dispose()

    # A restart resumes from the newest complete version, not from the base model.
    resumed = f"serving version {versions[-1].version}"
    serve_until(config, env, tmp_path / "restart.log", lambda log: resumed in log, 180)
