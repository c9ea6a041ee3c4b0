"""A seeded daemon history, written by the real queue, vote, grading and store code.

Three batches, versions 0..2, problems with and without reference answers, ties, votes with
no extractable answer, equivalent respellings, a version that votes a problem twice, and a
queue holding every state (queued, claimed with an expired lease, done, failed). Timestamps
are then spread over several hours so hourly throughput has more than one bucket.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text, update
from sqlalchemy.engine import make_url

from ttrl.daemon import model_versions, records, votes, workers
from ttrl.daemon.model_versions import VersionColumns
from ttrl.daemon.voting import vote_record
from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.models import ModelVersion, Problem, Vote, Worker
from ttrl.db.queue import NewProblem
from ttrl.engines.base import Completion

from ..conftest import ADMIN_PG_URL

N = 6
BATCHES = ("alpha", "beta", "gamma")
T0 = datetime(2026, 3, 1, 8, 0, 0)


def _answers(rng: random.Random, ref: str) -> list[str | None]:
    """One pass's extracted answers, drawn from the shapes a real vote meets."""
    wrong = str(int(ref) + rng.randint(1, 3))
    shape = rng.choice(["right", "wrong", "tie", "none", "respelled", "scattered"])
    answers: list[str | None] = {
        "right": [ref] * 4 + [wrong, None],
        "wrong": [wrong] * 4 + [ref] * 2,
        "tie": [ref, wrong] * 3,
        "none": [None] * N,
        "respelled": [ref, f"{ref}.0", f"\\frac{{{2 * int(ref)}}}{{2}}", wrong, wrong, None],
        "scattered": [ref, wrong, str(int(ref) + 7), None, wrong, str(int(ref) - 5)],
    }[shape]
    rng.shuffle(answers)
    return answers


def _record(
    problem_id: int,
    pass_index: int,
    version: int,
    answers: list[str | None],
    reference: str | None,
    rng: random.Random,
) -> records.VoteRecord:
    """The daemon's own vote record of completions whose final answers are ``answers``."""
    samples = [
        Completion(
            text=f"so \\boxed{{{answer}}}" if answer is not None else "no idea",
            prompt_token_ids=[1, 2, 3],
            token_ids=[rng.randrange(100) for _ in range(rng.randint(0, 12))],
            finish_reason="stop",
            model_version=version,
        )
        for answer in answers
    ]
    return vote_record(problem_id, pass_index, samples, reference)


def _vote_round(engine: Engine, version: int, rng: random.Random, worker: str) -> None:
    with transaction(engine) as conn:
        claimed = queue.claim(conn, 1000, worker, lease_s=600)
        refs = votes.reference_answers(conn, [c.id for c in claimed])
    truth = {c.id: (c.meta or {})["truth"] for c in claimed}
    for c in claimed:
        record = _record(c.id, c.passes_done, version, _answers(rng, truth[c.id]), refs[c.id], rng)
        with transaction(engine) as conn:
            votes.record_vote(conn, record, worker)
            # p1 is settled by the pass policy at its second pass (one of three unspent).
            settle = c.external_id == "p1" and c.passes_done == 1
            queue.complete_pass(
                conn, c.id, worker, record.label, record.share, version, settle=settle
            )


@dataclass(frozen=True)
class History:
    engine: Engine
    versions: tuple[int, ...] = (0, 1, 2)


def seed_history(engine: Engine, seed: int = 7) -> History:
    rng = random.Random(seed)
    problems = []
    for i in range(30):
        truth = str(rng.randint(2, 60))
        problems.append(
            NewProblem(
                prompt=f"problem {i}",
                external_id=f"p{i}",
                batch=BATCHES[i % 3],
                reference_answer=truth if i % 4 else None,  # a quarter have no reference
                passes=4 if i % 5 == 0 else 3,
                meta={"truth": truth},
            )
        )
    with transaction(engine) as conn:
        queue.enqueue(conn, problems)
        workers.register_worker(conn, "w-live", "host-a", 101, "all")
        workers.register_worker(conn, "w-dead", "host-b", 202, "all")

    for version in (0, 1, 2):
        if version:
            with transaction(engine) as conn:
                figures = {
                    "loss": 0.5 / version,
                    "kl": 0.01 * version,
                    "mean_reward": 0.6,
                    "n_groups": 10 + version,
                    "n_tokens": 1000 * version,
                    "train_s": 2.5 * version,
                    "swap_s": 0.25 * version,
                }
                model_versions.add_version(
                    conn,
                    version,
                    version - 1,
                    f"/ckpt/v{version}",
                    VersionColumns(**figures),
                    figures,
                )
        _vote_round(engine, version, rng, "w-live")
    _vote_round(engine, 2, rng, "w-live")  # the 4-pass problems: version 2 votes twice

    with transaction(engine) as conn:
        queue.enqueue(
            conn,
            [NewProblem(prompt=f"late {i}", batch="alpha", meta={"truth": "1"}) for i in range(3)],
        )
        expired, failing = queue.claim(conn, 2, "w-dead", lease_s=600)
        conn.execute(
            update(Problem).where(Problem.id == expired.id).values(lease_until=datetime(2000, 1, 1))
        )
        queue.fail(conn, failing.id, "w-dead", "boom", max_attempts=1)
        _spread_timestamps(conn, rng)
    return History(engine)


def _spread_timestamps(conn, rng: random.Random) -> None:
    """Votes of version v land in hours v and v+1 after T0; each version is made at hour v."""
    vote_rows = conn.execute(Vote.__table__.select()).all()
    for row in vote_rows:
        at = T0 + timedelta(
            hours=row.model_version,
            minutes=rng.randint(0, 110),
            microseconds=rng.randint(0, 999_999),
        )
        conn.execute(update(Vote).where(Vote.id == row.id).values(created_at=at))
    for version in (1, 2):
        conn.execute(
            update(ModelVersion)
            .where(ModelVersion.version == version)
            .values(created_at=T0 + timedelta(hours=version, seconds=version))
        )
    conn.execute(
        update(Worker)
        .where(Worker.id == "w-dead")
        .values(heartbeat_at=datetime(2026, 1, 1), state="serving")  # crashed: never said stopped
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def history(request: pytest.FixtureRequest, pg_server: Engine | None, tmp_path_factory):
    """One seeded database per kind for a whole module: the view tests only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'ttrl.db'}"
    elif pg_server is None:
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_PG_URL}")
    else:
        name = f"ttrl_test_{uuid.uuid4().hex[:12]}"
        with pg_server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(ADMIN_PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield seed_history(engine)
    engine.dispose()
    if request.param == "postgres":
        with pg_server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
