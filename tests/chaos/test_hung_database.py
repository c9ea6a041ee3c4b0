"""A PostgreSQL server that stops answering (TCP accepted, nothing read or sent) is an outage
like a refused connection: every command gives up with exit 2 within the connect timeout,
and a running daemon says so (log, metric) within ``daemon.outage_alert_s``, then carries
on when the server answers again. All on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from frozen_tcp import FreezableProxy, silent_server
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ttrl.db import make_engine, migrate
from ttrl.db.config import DatabaseConfig

TTRL = str(Path(sys.executable).with_name("ttrl"))
CONNECT_S = 2


def ttrl(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TTRL, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["db", "current"],
        ["db", "upgrade"],
        ["enqueue", "-"],
        ["requeue"],
        ["answers", "--batch", "x"],
        ["plot", "--out", "never.png"],
    ],
    ids=lambda a: " ".join(a),
)
def test_every_command_gives_up_on_a_silent_server(args: list[str], tmp_path: Path) -> None:
    with silent_server() as port:
        env = {
            "TTRL_DB_URL": f"postgresql://postgres@127.0.0.1:{port}/test",
            "TTRL_DATABASE__CONNECT_TIMEOUT_S": str(CONNECT_S),
        }
        t0 = time.monotonic()
        r = subprocess.run(
            [TTRL, *args],
            env={**os.environ, **env},
            input='{"prompt": "1+1?"}\n',
            capture_output=True,
            text=True,
            timeout=60,  # hung 90 s+ before the fix
        )
        took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert "cannot use database" in r.stderr and "timeout" in r.stderr
    assert "database.connect_timeout_s=2" in r.stderr and "Traceback" not in r.stderr
    assert took < CONNECT_S + 15, took  # the interpreter's start included


def test_timeouts_are_defaults_the_url_can_override(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url, DatabaseConfig(statement_timeout_s=7))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "7s"
    engine.dispose()
    url = make_url(fresh_pg_url).update_query_dict({"options": "-c statement_timeout=0"})
    engine = make_engine(url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
    engine.dispose()


def test_a_slow_query_on_a_live_server_is_not_cut(fresh_pg_url: str) -> None:
    engine = make_engine(fresh_pg_url, DatabaseConfig(io_timeout_s=1))
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_sleep(3)"))  # answers the probe: left alone
    engine.dispose()


def test_a_frozen_connection_fails_like_a_refused_one(fresh_pg_url: str) -> None:
    upstream = make_url(fresh_pg_url)
    proxy = FreezableProxy((upstream.host, upstream.port or 5432))
    url = upstream.set(port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(url, DatabaseConfig(io_timeout_s=2, connect_timeout_s=CONNECT_S))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            proxy.freeze()
            t0 = time.monotonic()
            with pytest.raises(Exception) as cut:
                conn.execute(text("SELECT 2"))  # hung forever before the fix
        assert "OperationalError" in type(cut.value).__name__
        assert "no answer from the database server" in str(cut.value)
        assert time.monotonic() - t0 < 2 + CONNECT_S + 8
        proxy.thaw()
        with engine.connect() as conn:  # the pool recovers
            assert conn.execute(text("SELECT 3")).scalar() == 3
    finally:
        proxy.close()
        engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(port: int, name: str) -> float | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.mark.slow
def test_a_daemon_reports_a_frozen_database_as_an_outage(fresh_pg_url: str, tmp_path: Path) -> None:
    upstream = make_url(fresh_pg_url)
    db = make_engine(fresh_pg_url)
    migrate.upgrade(db)
    db.dispose()
    proxy = FreezableProxy((upstream.host, upstream.port or 5432))
    alert_s, io_s, port = 8.0, 2.0, free_port()
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": {"io_timeout_s": io_s, "connect_timeout_s": CONNECT_S},
                "daemon": {
                    "updates": False,
                    "poll_s": 0.2,
                    "heartbeat_s": 1.0,
                    "outage_alert_s": alert_s,
                    "metrics_port": port,
                },
            }
        )
    )
    env = {
        **os.environ,
        "TTRL_DB_URL": upstream.set(port=proxy.port).render_as_string(hide_password=False),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("TTRL_CRASH_AT", None)
    log = tmp_path / "serve.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [TTRL, "serve", "--config", str(config)], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 180
        while "serving version" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        time.sleep(1)
        proxy.freeze()
        frozen = time.monotonic()
        while "database unavailable" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() - frozen < alert_s, log.read_text()  # silent before the fix
            time.sleep(0.3)
        warned = time.monotonic() - frozen
        while "UNREACHABLE" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            # Silent and at 0 before the fix: the loop hung in a query.
            assert time.monotonic() - frozen < alert_s + 10, log.read_text()
            time.sleep(0.3)
        reported = time.monotonic() - frozen
        down = metric(port, "ttrl_database_outage_seconds")
        assert down is not None and down > 0, log.read_text()
        assert (metric(port, "ttrl_database_errors_total") or 0) >= 1
        proxy.thaw()
        while "database back" not in log.read_text():
            assert proc.poll() is None and time.monotonic() - frozen < 120, log.read_text()
            time.sleep(0.3)
        assert metric(port, "ttrl_database_outage_seconds") == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()
    notify.setblocking(False)
    statuses = []
    with contextlib.suppress(BlockingIOError):
        while True:
            statuses.append(notify.recv(65536).decode())
    notify.close()
    assert any("STATUS=DATABASE UNREACHABLE" in msg for msg in statuses), statuses
    output = log.read_text()
    first_warning = next(line for line in output.splitlines() if "database unavailable" in line)
    assert "Traceback" not in output, output
    assert "maximum number of running instances" not in output
    print(
        f"\n[frozen database] warned {warned:.0f}s after the freeze "
        f"({first_warning.split('|')[-1].strip()[:90]}...), alarm after {reported:.0f}s "
        f"(outage_alert_s {alert_s:g}, io_timeout_s {io_s:g})",
        json.dumps({"warned_s": round(warned, 1), "alarm_s": round(reported, 1)}),
    )
