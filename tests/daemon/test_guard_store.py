"""The guard's SQL on both databases: where a rollback goes, what it marks, what it consumes,
and that canaries are never trained on."""

from __future__ import annotations

from sqlalchemy import Engine, select

from ttrl.daemon import guarding, model_versions, records, votes
from ttrl.daemon.guard import Decision
from ttrl.daemon.model_versions import VersionColumns
from ttrl.db import queue, transaction
from ttrl.db.models import ModelVersion, Rollout
from ttrl.db.queue import NewProblem

OK = [Decision("no_answer_rise", 0.0, 0.2, False, "none")]
BAD = [Decision("canary_drop", 0.5, 0.1, True, "rollback")]


def add(conn, version: int, canary: float | None, decisions: list[Decision] | None) -> None:
    model_versions.add_version(
        conn, version, version - 1, f"/ckpt/v{version}", VersionColumns(canary_pass1=canary)
    )
    if decisions:
        model_versions.record_decisions(conn, version, "w", decisions)


def statuses(conn) -> dict[int, str]:
    return dict(conn.execute(select(ModelVersion.version, ModelVersion.status)).all())


def test_rollback_goes_to_the_best_probed_version_and_consumes_the_bad_rollouts(
    engine: Engine,
) -> None:
    with transaction(engine) as conn:
        add(conn, 1, 0.9, OK)  # probed, best canary
        add(conn, 2, 0.8, OK)  # probed, worse
        add(conn, 3, None, None)  # never probed: not a rollback target
        add(conn, 4, 0.2, BAD)
        assert model_versions.best_version(conn, below=4) == (1, "/ckpt/v1")
        assert model_versions.best_version(conn, below=1) is None  # nothing before: the base model
        queue.enqueue(conn, [NewProblem("What is 1 + 1?")])
        problem = queue.claim(conn, 1, "w", 60)[0]
        vote = records.VoteRecord(
            problem.id, 0, 4, "2", "2", 1.0, 1, False, None,
            [records.RolloutRecord("\\boxed{2}", [1], [2], "stop", "2", "2", 1.0)],
        )  # fmt: skip
        votes.record_vote(conn, vote, "w")
        model_versions.roll_back(conn, bad=4, to=1)
        assert statuses(conn) == {1: "active", 2: "retired", 3: "retired", 4: "rolled_back"}
        trained = conn.execute(select(Rollout.trained_in_version)).scalars().all()
        assert trained == [4]  # the bad version's rollouts never reach an update
        assert model_versions.newest_active_version(conn) == (1, "/ckpt/v1")
        model_versions.roll_back(conn, bad=1, to=None)  # back to the base: no active version
        assert model_versions.newest_active_version(conn) is None
        assert model_versions.newest_version_number(conn) == 4


def test_canary_batches_are_never_trained_on(engine: Engine) -> None:
    with transaction(engine) as conn:
        queue.enqueue(
            conn,
            [NewProblem("What is 2 + 2?", batch="canary", reference_answer="4"),
             NewProblem("What is 3 + 3?", batch="work")],
        )  # fmt: skip
        for problem in queue.claim(conn, 2, "w", 60):
            record = records.VoteRecord(
                problem.id, 0, 0, "4", "4", 0.5, 2, False, None,
                [records.RolloutRecord("\\boxed{4}", [1], [2], "stop", "4", "4", 1.0),
                 records.RolloutRecord("\\boxed{5}", [1], [3], "stop", "5", "5", 0.0)],
            )  # fmt: skip
            votes.record_vote(conn, record, "w")
        assert votes.count_untrained_groups(conn, 0) == 2
        assert votes.count_untrained_groups(conn, 0, ["canary"]) == 1
        groups = votes.untrained_rollouts(conn, 0, 10, ["canary"])
        assert len(groups) == 1 and all(len(rows) == 2 for rows in groups.values())
        # Each rollout carries its vote's label share, for rl.min_label_share.
        assert {r.label_share for rows in groups.values() for r in rows} == {0.5}
        probe = guarding.probe_prompts(conn, ["canary"], max_canaries=5, recent=5)
        assert probe == [("What is 2 + 2?", "4"), ("What is 3 + 3?", None)]
