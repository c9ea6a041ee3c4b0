"""Every dashboard view equals a straightforward Python computation over the raw tables.

The expected figures are recomputed from the rows the daemon stored, not read back from the
columns the views aggregate where a rawer source exists: label correctness, reward accuracy
and pass@1 are re-graded per rollout against the reference with ``equivalent``; rollout and
token counts come from the rollouts table; vote share from the rollouts' rewards.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from sqlalchemy import Connection, Table, inspect, select, text

from ttrl.answers import equivalent
from ttrl.dashboards import views
from ttrl.db import migrate, transaction, utcnow
from ttrl.db.models import ModelVersion, Problem, Rollout, Vote, Worker

from .conftest import History

GRAFANA = Path(__file__).resolve().parents[2] / "configs" / "grafana"
AGE_TOLERANCE_S = 30.0  # the views read the clock a moment after Python does


def _rows(conn: Connection, model: type) -> list[Any]:
    return conn.execute(select(model.__table__)).all()


def _view(conn: Connection, table: Table, *keys: str) -> dict[tuple, dict[str, Any]]:
    rows = [dict(r._mapping) for r in conn.execute(select(table))]
    by_key = {tuple(r[k] for k in keys): r for r in rows}
    assert len(by_key) == len(rows), f"{table.name}: key {keys} is not unique"
    return by_key


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if present else None


def _assert_same(
    actual: dict[tuple, dict],
    expected: dict[tuple, dict],
    name: str,
    tolerance: dict[str, float] | None = None,
) -> None:
    assert actual.keys() == expected.keys(), name
    for key, want in expected.items():
        got = actual[key]
        for col, w in want.items():
            g, tol = got[col], (tolerance or {}).get(col, 1e-9)
            if isinstance(w, float) and g is not None:
                assert math.isclose(g, w, rel_tol=1e-9, abs_tol=tol), (name, key, col, g, w)
            else:
                assert g == w, (name, key, col, g, w)


def _tables(conn: Connection) -> dict[str, list[Any]]:
    return {
        "problems": _rows(conn, Problem),
        "votes": _rows(conn, Vote),
        "rollouts": _rows(conn, Rollout),
        "versions": _rows(conn, ModelVersion),
        "workers": _rows(conn, Worker),
    }


def _accuracy(raw: dict[str, list[Any]], group: Callable[[Any, Any], tuple]) -> dict:
    """TTRL metrics per group of votes (Zuo et al. 2025, §4), re-graded from the rollouts."""
    problems = {p.id: p for p in raw["problems"]}
    rollouts_of: dict[int, list[Any]] = defaultdict(list)
    for r in raw["rollouts"]:
        rollouts_of[r.vote_id].append(r)
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for v in raw["votes"]:
        groups[group(v, problems[v.problem_id])].append(v)

    out = {}
    for key, votes in groups.items():
        graded = [v for v in votes if problems[v.problem_id].reference_answer is not None]

        def truth(r: Any) -> bool:
            return equivalent(r.raw_answer, problems[r.problem_id].reference_answer)

        rolls = [r for v in votes for r in rollouts_of[v.id]]
        out[key] = {
            "votes": len(votes),
            "rollouts": len(rolls),
            "with_reference": len(graded),
            "label_accuracy": _mean(
                float(equivalent(v.label, problems[v.problem_id].reference_answer)) for v in graded
            ),
            "reward_accuracy": _mean(
                fmean(float(truth(r) == (r.reward == 1.0)) for r in rollouts_of[v.id])
                for v in graded
            ),
            "pass_at_1": _mean(fmean(float(truth(r)) for r in rollouts_of[v.id]) for v in graded),
            "majority_ratio": fmean(
                sum(r.reward for r in rollouts_of[v.id]) / len(rollouts_of[v.id]) for v in votes
            ),
            "mean_distinct": fmean(v.n_distinct for v in votes),
            "tie_rate": fmean(float(v.tie) for v in votes),
            "no_answer_rate": fmean(
                float(all(r.raw_answer is None for r in rollouts_of[v.id])) for v in votes
            ),
            "mean_completion_tokens": fmean(r.n_tokens for r in rolls),
            "first_vote_at": min(v.created_at for v in votes),
            "last_vote_at": max(v.created_at for v in votes),
        }
    return out


def test_view_columns_match_their_declarations(history: History) -> None:
    assert set(inspect(history.engine).get_view_names()) == {t.name for t in views.ALL}
    with transaction(history.engine, write=False) as conn:
        for table in views.ALL:
            cols = list(conn.execute(text(f"SELECT * FROM {table.name} WHERE 1 = 0")).keys())
            assert cols == [c.name for c in table.columns], table.name


def test_history_covers_the_hard_cases(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
    votes = raw["votes"]
    refs = {p.id: p.reference_answer for p in raw["problems"]}
    assert any(v.tie for v in votes)
    assert any(v.label is None for v in votes)
    assert any(refs[v.problem_id] is None for v in votes)
    assert {True, False} <= {v.label_correct for v in votes}
    per_version_problem = defaultdict(int)
    for v in votes:
        per_version_problem[v.model_version, v.problem_id] += 1
    assert max(per_version_problem.values()) == 2
    assert {p.status for p in raw["problems"]} == {"queued", "claimed", "done", "failed"}


def test_accuracy_by_version(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        actual = _view(conn, views.accuracy_by_version, "model_version")
    expected = _accuracy(raw, lambda v, p: (v.model_version,))
    assert set(expected) == {(0,), (1,), (2,)}
    _assert_same(actual, expected, "v_accuracy_by_version")


def test_accuracy_by_version_and_batch(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        actual = _view(conn, views.accuracy_by_version_batch, "model_version", "batch")
    expected = _accuracy(raw, lambda v, p: (v.model_version, p.batch))
    assert len(expected) == 9
    _assert_same(actual, expected, "v_accuracy_by_version_batch")


def test_queue(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        now = utcnow()
        actual = _view(conn, views.queue, "batch", "status")
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for p in raw["problems"]:
        groups[p.batch, p.status].append(p)
    expected = {
        key: {
            "problems": len(ps),
            "passes_left": sum(p.passes_wanted - p.passes_done for p in ps if not p.settled),
            "oldest_created_at": min(p.created_at for p in ps),
            "oldest_age_s": (now - min(p.created_at for p in ps)).total_seconds(),
            "longest_in_status_s": (now - min(p.updated_at for p in ps)).total_seconds(),
            "expired_leases": sum(p.status == "claimed" and p.lease_until < now for p in ps),
            "settled": sum(p.settled for p in ps),
        }
        for key, ps in groups.items()
    }
    assert sum(e["expired_leases"] for e in expected.values()) == 1
    assert sum(e["settled"] for e in expected.values()) == 1
    ages = dict.fromkeys(("oldest_age_s", "longest_in_status_s"), AGE_TOLERANCE_S)
    _assert_same(actual, expected, "v_queue", ages)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def test_throughput_hourly(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        actual = _view(conn, views.throughput_hourly, "hour")
    vote_hour = {v.id: _hour(v.created_at) for v in raw["votes"]}
    expected: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: (
            dict.fromkeys(
                ("votes", "rollouts", "completion_tokens", "updates", "trained_tokens"), 0
            )
            | {"train_s": 0.0, "swap_s": 0.0}
        )
    )
    for v in raw["votes"]:
        expected[vote_hour[v.id],]["votes"] += 1
    for r in raw["rollouts"]:
        expected[vote_hour[r.vote_id],]["rollouts"] += 1
        expected[vote_hour[r.vote_id],]["completion_tokens"] += r.n_tokens
    for m in raw["versions"]:
        row = expected[_hour(m.created_at),]
        row["updates"] += 1
        row["trained_tokens"] += m.n_tokens
        row["train_s"] += m.train_s
        row["swap_s"] += m.swap_s
    assert len(expected) >= 4
    _assert_same(actual, dict(expected), "v_throughput_hourly")


def test_versions(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        actual = _view(conn, views.versions, "version")
    made = {m.version: m for m in raw["versions"]}
    expected = {
        (m.version,): {
            "parent": m.parent,
            "status": m.status,
            "loss": m.loss,
            "swap_s": m.swap_s,
            "train_s": m.train_s,
            "trained_tokens": m.n_tokens,
            "train_tokens_per_s": m.n_tokens / m.train_s,
            "since_parent_s": (m.created_at - made[m.parent].created_at).total_seconds()
            if m.parent in made
            else None,
        }
        for m in raw["versions"]
    }
    assert expected[(2,)]["since_parent_s"] == pytest.approx(3601.0)
    assert [v["status"] for _, v in sorted(expected.items())] == ["retired", "active"]
    _assert_same(actual, expected, "v_versions", {"since_parent_s": 1e-3})


def test_workers(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        now = utcnow()
        actual = _view(conn, views.workers, "id")
    expected = {
        (w.id,): {
            "state": w.state,
            "heartbeat_at": w.heartbeat_at,
            "heartbeat_age_s": (now - w.heartbeat_at).total_seconds(),
        }
        for w in raw["workers"]
    }
    _assert_same(actual, expected, "v_workers", {"heartbeat_age_s": AGE_TOLERANCE_S})


def test_answers(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        actual = _view(conn, views.answers, "problem_id")
    newest: dict[int, Any] = {}
    for v in raw["votes"]:
        if v.problem_id not in newest or v.pass_index > newest[v.problem_id].pass_index:
            newest[v.problem_id] = v
    expected = {}
    for p in raw["problems"]:
        v = newest.get(p.id)
        expected[(p.id,)] = {
            "batch": p.batch,
            "status": p.status,
            "answer": v.label if v else None,
            "answer_share": v.share if v else None,
            "answer_version": v.model_version if v else None,
            "answer_correct": equivalent(v.label, p.reference_answer)
            if v and p.reference_answer is not None
            else None,
            "n_distinct": v.n_distinct if v else None,
            "tie": v.tie if v else None,
        }
    assert sum(e["answer_version"] is None for e in expected.values()) == 3  # late ones
    _assert_same(actual, expected, "v_answers")


def test_answer_history(history: History) -> None:
    with transaction(history.engine, write=False) as conn:
        raw = _tables(conn)
        actual = _view(conn, views.answer_history, "problem_id", "pass_index")
    passes: dict[int, list[Any]] = defaultdict(list)
    for v in raw["votes"]:
        passes[v.problem_id].append(v)
    expected = {}
    for pid, vs in passes.items():
        vs.sort(key=lambda v: v.pass_index)
        for before, v in zip([None, *vs], vs, strict=False):
            expected[(pid, v.pass_index)] = {
                "model_version": v.model_version,
                "label": v.label,
                "share": v.share,
                "correct": v.label_correct,
                "created_at": v.created_at,
                "previous_label": before.label if before else None,
                "label_changed": int(before.label_key != v.label_key) if before else None,
            }
    assert any(e["label_changed"] == 1 for e in expected.values())
    assert any(e["label_changed"] == 0 for e in expected.values())
    _assert_same(actual, expected, "v_answer_history")


def _grafana_sql() -> list[tuple[str, str]]:
    dashboard = json.loads((GRAFANA / "dashboards" / "ttrl.json").read_text())
    queries = [(p["title"], t["rawSql"]) for p in dashboard["panels"] for t in p["targets"]]
    queries += [(v["name"], v["query"]) for v in dashboard["templating"]["list"]]
    queries += [(a["name"], a["target"]["rawSql"]) for a in dashboard["annotations"]["list"]]
    return queries


def test_grafana_dashboard_queries_run(history: History) -> None:
    """Every panel, variable and annotation query of the provisioned dashboard runs on the
    PostgreSQL views (Grafana's macros replaced as Grafana would) and returns rows."""
    if history.engine.dialect.name != "postgresql":
        pytest.skip("the Grafana dashboard reads the PostgreSQL views")
    queries = _grafana_sql()
    assert len(queries) >= 10
    with transaction(history.engine, write=False) as conn:
        for title, sql in queries:
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= '2026-03-01'", sql)
            sql = sql.replace("$batch", "beta")
            assert "$" not in sql, (title, sql)
            assert conn.execute(text(sql)).all(), f"{title}: no rows from {sql}"


def test_backfill_and_downgrade_keep_the_daemon_rows(history: History) -> None:
    """Down to 0001 and up again: views gone and back, tokens backfilled, no row lost.
    (Last in this module: it leaves the shared history as it found it.)"""
    engine = history.engine
    with transaction(engine, write=False) as conn:
        before = _view(conn, views.accuracy_by_version, "model_version")
        n_rollouts = len(_rows(conn, Rollout))
    migrate.downgrade(engine, "0001")
    assert not inspect(engine).get_view_names()
    assert "completion_tokens" not in {c["name"] for c in inspect(engine).get_columns("votes")}
    migrate.upgrade(engine)
    with transaction(engine, write=False) as conn:
        assert len(_rows(conn, Rollout)) == n_rollouts
        after = _view(conn, views.accuracy_by_version, "model_version")
    _assert_same(after, before, "v_accuracy_by_version after down/up")
