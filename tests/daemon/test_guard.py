"""The collapse guard: its signals on hand-made samples, and a destructive update caught
and rolled back by the real daemon on the tiny model."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from serving import PLAIN_RL, TTRL, serve_until
from sqlalchemy import select

from ttrl.config.daemon import GuardConfig
from ttrl.daemon import guard
from ttrl.db import make_engine, transaction
from ttrl.db.models import GuardDecision, ModelVersion, Problem
from ttrl.engines.base import Completion


def sample(text: str, n_tokens: int = 4, logprob: float = -0.5) -> Completion:
    return Completion(text, [1], [7] * n_tokens, "stop", 0, [logprob] * n_tokens)


def test_probe_stats_reads_share_distinct_no_answer_length_nll_and_canaries() -> None:
    groups = [
        [sample("\\boxed{3}"), sample("\\boxed{3}"), sample("\\boxed{4}"), sample("no answer")],
        [sample("\\boxed{7}", 8, -1.0)] * 4,
    ]
    stats = guard.probe_stats(groups, [None, "7"])
    assert stats.vote_share == pytest.approx((2 / 4 + 1) / 2)
    assert stats.distinct == pytest.approx((2 + 1) / 2)
    assert stats.no_answer == pytest.approx(1 / 8)
    assert stats.tokens == pytest.approx((4 * 4 + 4 * 8) / 8)
    assert stats.nll == pytest.approx((16 * 0.5 + 32 * 1.0) / 48)
    assert stats.canary_pass1 == 1.0


def test_probe_stats_refuses_mismatched_references() -> None:
    with pytest.raises(ValueError, match="one reference"):
        guard.probe_stats([[sample("\\boxed{1}")]], [])


BASE = guard.ProbeStats(
    vote_share=0.8, distinct=2.0, no_answer=0.05, tokens=40, nll=0.5, canary_pass1=0.8
)


def tripped(stats: guard.ProbeStats, kl: float | None = None, **cfg: Any) -> set[str]:
    decisions = guard.check(stats, BASE, 0.85, kl, GuardConfig(max_kl=0.5, **cfg))
    return {d.signal for d in decisions if d.tripped}


def test_a_healthy_version_trips_nothing_and_every_signal_is_a_decision() -> None:
    decisions = guard.check(BASE, BASE, 0.8, 0.01, GuardConfig(max_kl=0.5))
    assert {d.signal for d in decisions} == {
        "vote_share",
        "entropy_ratio",
        "kl",
        "length_ratio",
        "no_answer_rise",
        "canary_drop",
    }
    assert not any(d.tripped for d in decisions) and guard.verdict(decisions) is None
    assert all(d.action == "none" for d in decisions)


@pytest.mark.parametrize(
    ("change", "kl", "signal"),
    [
        ({"vote_share": 1.0}, None, "vote_share"),
        ({"nll": 0.02}, None, "entropy_ratio"),
        ({}, 0.9, "kl"),
        ({"tokens": 100}, None, "length_ratio"),
        ({"tokens": 10}, None, "length_ratio"),
        ({"no_answer": 0.5}, None, "no_answer_rise"),
        ({"canary_pass1": 0.5}, None, "canary_drop"),
    ],
)
def test_each_signal_trips_alone(change: dict, kl: float | None, signal: str) -> None:
    stats = guard.ProbeStats(**{**BASE.__dict__, **change})
    assert tripped(stats, kl) == {signal}


def test_the_canary_drop_is_measured_from_the_best_version() -> None:
    stats = guard.ProbeStats(**{**BASE.__dict__, "canary_pass1": 0.8})
    drop = next(
        d for d in guard.check(stats, BASE, 0.95, None, GuardConfig()) if d.signal == "canary_drop"
    )
    assert drop.value == pytest.approx(0.15) and drop.tripped


def test_verdict_takes_the_most_severe_action() -> None:
    stats = guard.ProbeStats(**{**BASE.__dict__, "vote_share": 1.0, "no_answer": 0.9})
    decisions = guard.check(stats, BASE, None, None, GuardConfig(action="hold"))
    assert guard.verdict(decisions) == "hold"  # saturation alone would only alert
    only_saturated = guard.ProbeStats(**{**BASE.__dict__, "vote_share": 1.0})
    assert guard.verdict(guard.check(only_saturated, BASE, None, None, GuardConfig())) == "alert"


def test_without_logprobs_the_entropy_signal_is_not_checked() -> None:
    stats = guard.ProbeStats(**{**BASE.__dict__, "nll": math.nan})
    assert "entropy_ratio" not in {
        d.signal for d in guard.check(stats, BASE, None, None, GuardConfig())
    }


@pytest.mark.slow
def test_a_destructive_update_is_caught_and_rolled_back(db_url: str, tmp_path: Path) -> None:
    """Learning rate x1000 (0.1 instead of 1e-4): the first update wrecks the model, the
    guard sees the canaries fail and rolls back; after max_rollbacks it holds. Restarted
    with a sane learning rate, it numbers new versions after the rolled-back ones."""
    cfg = {
        "engine": {"sampling": {"max_new_tokens": 64}},
        "rl": {**PLAIN_RL, "lr": 0.1},
        "queue": {"claim_batch": 4, "lease_s": 60},
        "daemon": {
            "votes": 6,
            "update_every_groups": 4,
            "poll_s": 0.2,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "grace_s": 60,
        },
        "guard": {"every_updates": 1, "probe_prompts": 8, "probe_samples": 6, "max_rollbacks": 2},
    }
    config = tmp_path / "guard.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "TTRL_DB_URL": db_url, "OMP_NUM_THREADS": "1"}

    def ttrl(*args: str, stdin: str | None = None) -> str:
        r = subprocess.run([TTRL, *args], env=env, input=stdin, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    ttrl("db", "upgrade")
    canaries = ttrl("toy", "problems", "--seed", "5", "--count", "12", "--level", "1")
    ttrl("enqueue", "-", "--batch", "canary", stdin=canaries)
    work = ttrl("toy", "problems", "--seed", "6", "--count", "32")
    work = "".join(json.dumps({**json.loads(x), "passes": 20}) + "\n" for x in work.splitlines())
    ttrl("enqueue", "-", "--batch", "work", stdin=work)

    output = serve_until(
        config, env, tmp_path / "serve.log", lambda log: "updates held" in log, 300
    )
    db = make_engine(db_url)
    with transaction(db, write=False) as conn:
        versions = conn.execute(select(ModelVersion.__table__).order_by(ModelVersion.version)).all()
        decisions = conn.execute(select(GuardDecision.__table__)).all()
        canary_votes = (
            conn.execute(select(Problem.passes_done).where(Problem.batch == "canary"))
            .scalars()
            .all()
        )
    db.dispose()
    assert "Traceback" not in output
    # Every update was refused: two rolled back versions, nothing ever became active.
    assert [v.status for v in versions] == ["rolled_back", "rolled_back"], versions
    assert [v.parent for v in versions] == [0, 0]  # both trained from the base again
    drops = [d for d in decisions if d.signal == "canary_drop"]
    assert len(drops) == 2 and all(d.tripped and d.action == "rollback" for d in drops)
    canary_after = [v.canary_pass1 for v in versions]
    canary_before = drops[0].value + canary_after[0]  # drop = best (the base) - candidate
    print(f"\ncanary pass@1: base {canary_before:.3f}, destructive updates {canary_after}")
    assert canary_before >= 0.6 and all(c <= canary_before - 0.3 for c in canary_after)
    assert "serving version 0 again" in output and "updates held at version 0" in output
    assert sum(canary_votes) > 0  # canaries are voted on like any problem

    # Restarted with a sane learning rate, it trains on from the base (the active version)
    # and numbers the new version after the recorded ones, not into them.
    config.write_text(yaml.safe_dump({**cfg, "rl": {**PLAIN_RL, "lr": 1e-4}}))
    output = serve_until(
        config, env, tmp_path / "restart.log", lambda log: "version 3:" in log, 300
    )
    assert "Traceback" not in output
    db = make_engine(db_url)
    with transaction(db, write=False) as conn:
        third = conn.execute(select(ModelVersion.__table__).where(ModelVersion.version == 3)).one()
    db.dispose()
    assert third.parent == 0  # trained from the base, the active version
