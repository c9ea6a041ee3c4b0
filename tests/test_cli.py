"""The real `ttrl` executable, end to end, against SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ttrl.daemon import model_versions
from ttrl.daemon.model_versions import VersionColumns
from ttrl.db import make_engine, migrate, transaction
from ttrl.db.models import Problem

TTRL = str(Path(sys.executable).with_name("ttrl"))


def ttrl(
    *args: str,
    db: str,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TTRL_DB_URL": db, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [TTRL, *args],
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


def count(db: str) -> int:
    engine = make_engine(db)
    with transaction(engine, write=False) as conn:
        n = conn.execute(select(func.count()).select_from(Problem)).scalar_one()
    engine.dispose()
    return n


GOOD = '{"prompt": "1+1?", "id": "a", "reference_answer": "2"}\n{"prompt": "2+2?", "id": "b"}\n'
BAD = GOOD + '{"prompt": ""}\nnot json\n'


def test_enqueue_rejects_whole_file_or_skips_invalid(db_url: str, tmp_path: Path) -> None:
    assert ttrl("db", "upgrade", db=db_url).returncode == 0
    f = tmp_path / "problems.jsonl"
    f.write_text(BAD)

    r = ttrl("enqueue", str(f), db=db_url)
    assert r.returncode == 1
    assert f"{f}: line 3: missing prompt" in r.stderr
    assert f"{f}: line 4: malformed JSON" in r.stderr
    assert "nothing was inserted" in r.stderr
    assert count(db_url) == 0

    r = ttrl("enqueue", str(f), "--skip-invalid", db=db_url)
    assert r.returncode == 3, r.stderr
    assert "inserted 2, already present 0, invalid 2" in r.stdout
    assert count(db_url) == 2

    no_prompt = tmp_path / "no_prompt.csv"
    no_prompt.write_text("question\n1+1?\n")
    r = ttrl("enqueue", str(no_prompt), "--skip-invalid", db=db_url)
    assert r.returncode == 1, r.stderr  # nothing valid: rejected, not "partly inserted"
    assert "no valid line; nothing was inserted" in r.stderr

    good = tmp_path / "good.jsonl"
    good.write_text(GOOD)
    r = ttrl("enqueue", str(good), db=db_url)
    assert r.returncode == 0
    assert "inserted 0, already present 2, invalid 0" in r.stdout

    csv_in = b"prompt,batch\nfrom stdin,piped\n"
    r = ttrl("enqueue", "-", db=db_url, stdin=csv_in)
    assert r.returncode == 0 and "inserted 1" in r.stdout

    r = ttrl("status", db=db_url)
    assert r.returncode == 0
    assert "default" in r.stdout and "piped" in r.stdout
    assert count(db_url) == 3


def test_commands_on_an_unmigrated_database_say_what_to_do(
    fresh_sqlite_url: str, tmp_path: Path
) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text(GOOD)
    for args in (["enqueue", str(f)], ["db", "current"], ["db", "downgrade", "base"]):
        r = ttrl(*args, db=fresh_sqlite_url)
        assert r.returncode == 2
        assert "no database file" in r.stderr and "run `ttrl db upgrade`" in r.stderr
        assert not Path(fresh_sqlite_url.removeprefix("sqlite:///")).exists()  # none made
    make_engine(fresh_sqlite_url).connect().close()  # an empty file: not migrated
    r = ttrl("enqueue", str(f), db=fresh_sqlite_url)
    assert r.returncode == 2
    assert "run `ttrl db upgrade` first" in r.stderr
    r = ttrl("db", "current", db=fresh_sqlite_url)
    assert "current: none" in r.stdout


def test_db_upgrade_current_downgrade(db_url: str) -> None:
    head = migrate.head(make_engine(db_url))
    r = ttrl("db", "upgrade", db=db_url)
    assert r.returncode == 0 and f"schema at revision {head}" in r.stdout
    assert f"current: {head}  head: {head}" in ttrl("db", "current", db=db_url).stdout
    r = ttrl("db", "downgrade", "base", db=db_url)
    assert r.returncode == 0 and "base (empty)" in r.stdout
    for args in (["upgrade", "nosuch"], ["downgrade", head]):  # unknown; not below the current
        r = ttrl("db", *args, db=db_url)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"cannot migrate to '{args[1]}'" in r.stderr and "Use head, base" in r.stderr


def test_default_database_is_a_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TTRL_DB_URL"}
    r = subprocess.run(
        [TTRL, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ttrl.db").exists()


def test_config_show_reflects_env_and_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("queue:\n  max_attempts: 9\n")
    r = ttrl(
        "config",
        "show",
        "--config",
        str(f),
        db="sqlite:///x.db",
        env={"TTRL_QUEUE__LEASE_S": "12.5"},
    )
    assert r.returncode == 0, r.stderr
    assert "db_url: sqlite:///x.db" in r.stdout
    assert "lease_s: 12.5" in r.stdout and "max_attempts: 9" in r.stdout
    r = ttrl("config", "show", "--config", str(tmp_path / "missing.yaml"), db="sqlite:///x.db")
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [("foo", "unusable database URL"), ("mysql://u@h/d", "unusable database URL")],
)
def test_malformed_database_url_is_a_clear_error(url: str, message: str) -> None:
    r = ttrl("status", db=url)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_unreachable_database_is_a_clear_error() -> None:
    r = ttrl("status", db="postgresql://postgres@127.0.0.1:1/nowhere")
    assert r.returncode == 2
    assert "cannot use database postgresql+psycopg://postgres@127.0.0.1:1/nowhere" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args", [["enqueue", "/no/such/file.jsonl"], ["enqueue", "x", "--format", "xml"]]
)
def test_bad_arguments(args: list[str], fresh_sqlite_url: str) -> None:
    r = ttrl(*args, db=fresh_sqlite_url)
    assert r.returncode == 2
    assert "error:" in r.stderr


def test_serve_with_wrong_config_types_exits_78_naming_each_key(tmp_path: Path) -> None:
    """systemd's RestartPreventExitStatus=78: a bad configuration is said, not retried."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("daemon:\n  votes: many\nrl:\n  lr: [1]\n")
    r = ttrl("serve", "--config", str(bad), db=f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 78, r.stderr
    assert "daemon.votes: Input should be a valid integer" in r.stderr and "'many'" in r.stderr
    assert "rl.lr: Input should be a valid number" in r.stderr and str(bad) in r.stderr
    env_bad = ttrl("serve", db="sqlite:///x.db", env={"TTRL_QUEUE__LEASE_S": "abc"})
    assert env_bad.returncode == 78 and "queue.lease_s" in env_bad.stderr
    assert "set by TTRL_QUEUE__LEASE_S" in env_bad.stderr  # which variable to fix
    assert "set by" not in r.stderr  # those came from the file


def test_serve_with_vllm_on_a_host_without_it_exits_78(
    fresh_sqlite_url: str, tmp_path: Path
) -> None:
    # make test installs vLLM: a package of that name that fails to import stands for a
    # host without it.
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text("raise ImportError('no vllm here')\n")
    assert ttrl("db", "upgrade", db=fresh_sqlite_url).returncode == 0
    hidden = {"TTRL_ENGINE__KIND": "vllm", "PYTHONPATH": str(tmp_path)}
    r = ttrl("serve", db=fresh_sqlite_url, env=hidden)
    assert r.returncode == 78, r.stderr
    assert "engine.kind='vllm' needs vLLM" in r.stderr and "Traceback" not in r.stderr


def test_status_into_a_pipe_is_not_squeezed_into_80_columns(fresh_sqlite_url: str) -> None:
    assert ttrl("db", "upgrade", db=fresh_sqlite_url).returncode == 0
    engine = make_engine(fresh_sqlite_url)
    with transaction(engine) as conn:
        model_versions.add_version(
            conn, 1, 0, "/v1", VersionColumns(train_s=75.123, swap_s=0.25), status="active"
        )
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run(
        [TTRL, "status"],
        env={**env, "TTRL_DB_URL": fresh_sqlite_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "tokens/rollout" in r.stdout and "75.1s" in r.stdout and "…" not in r.stdout


def test_requeue_by_status_batch_and_error(db_url: str) -> None:
    """`ttrl requeue` is the operator's retry (only a Python function before)."""
    assert ttrl("db", "upgrade", db=db_url).returncode == 0
    engine = make_engine(db_url)
    from ttrl.db import queue

    with transaction(engine) as conn:
        queue.enqueue(
            conn,
            [queue.NewProblem(f"p{i}", batch="a" if i < 4 else "b") for i in range(6)],
        )
        claimed = queue.claim(conn, 6, "w", 60)
        for c in claimed[:3]:
            queue.fail(conn, c.id, "w", "generation failed: CUDA out of memory", 1)
        queue.fail(conn, claimed[3].id, "w", "generation failed: prompt too long", 1)
        queue.complete_pass(conn, claimed[4].id, "w", "1", 1.0, 0)
        queue.fail(conn, claimed[5].id, "w", "generation failed: CUDA out of memory", 1)

    def statuses() -> dict[str, int]:
        with transaction(engine, write=False) as conn:
            rows = conn.execute(select(Problem.status, func.count()).group_by(Problem.status))
            return dict(rows.all())

    r = ttrl("requeue", "--batch", "a", "--error", "out of memory", "--dry-run", db=db_url)
    assert r.returncode == 0 and "would requeue 3 failed problem(s) of batch 'a'" in r.stdout
    assert statuses() == {"failed": 5, "done": 1}
    r = ttrl("requeue", "--batch", "a", "--error", "out of memory", db=db_url)
    assert r.returncode == 0 and "requeued 3" in r.stdout, r.stderr
    assert statuses() == {"failed": 2, "done": 1, "queued": 3}
    r = ttrl("requeue", db=db_url)  # every failed one
    assert "requeued 2" in r.stdout and statuses() == {"done": 1, "queued": 5}
    r = ttrl("requeue", "--status", "done", db=db_url)  # one more pass
    assert "requeued 1" in r.stdout and statuses() == {"queued": 6}
    with transaction(engine, write=False) as conn:
        again = conn.execute(select(Problem.__table__).where(Problem.id == claimed[4].id)).one()
    assert (again.passes_wanted, again.passes_done, again.attempts) == (2, 1, 0)
    bad = ttrl("requeue", "--status", "claimed", db=db_url)
    assert bad.returncode == 2 and "--status must be one of failed, done" in bad.stderr
    engine.dispose()


def test_config_show_masks_the_database_password() -> None:
    r = ttrl("config", "show", db="postgresql://ttrl:hunter2@db.internal:5432/ttrl")
    assert r.returncode == 0, r.stderr
    assert "db_url: postgresql://ttrl:***@db.internal:5432/ttrl" in r.stdout
    assert "hunter2" not in r.stdout


def test_a_misspelt_ttrl_variable_stops_every_command(fresh_sqlite_url: str) -> None:
    assert ttrl("db", "upgrade", db=fresh_sqlite_url).returncode == 0
    typo = {"TTRL_DEAMON__VOTES": "3"}
    r = ttrl("serve", db=fresh_sqlite_url, env=typo)
    assert r.returncode == 78 and "TTRL_DEAMON__VOTES" in r.stderr  # systemd: no restart
    assert "did you mean TTRL_DAEMON__VOTES?" in r.stderr and "Traceback" not in r.stderr
    r = ttrl("status", db=fresh_sqlite_url, env=typo)
    assert r.returncode == 2 and "TTRL_DEAMON__VOTES" in r.stderr


def test_an_error_message_prints_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """Brackets in a message are not rich markup: the extra's name survives."""
    from ttrl.cli_support import fail

    fail("matplotlib is missing: pip install 'ttrl[plot]'")
    assert "pip install 'ttrl[plot]'" in capsys.readouterr().err
