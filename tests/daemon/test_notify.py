"""`ttrl serve` speaks systemd's notify protocol: READY=1 after the model loads, STATUS=
lines, and WATCHDOG=1 only while its loop makes progress."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TTRL = str(Path(sys.executable).with_name("ttrl"))


def serve_with_notify(tmp_path: Path, daemon: dict, seconds: float) -> list[str]:
    """Run `ttrl serve` on an empty SQLite queue with a notify socket and a 1 s watchdog;
    return the messages it sent."""
    db_url = f"sqlite:///{tmp_path / 'ttrl.db'}"
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"daemon": {"updates": False, **daemon}}))
    env = {
        **os.environ,
        "TTRL_DB_URL": db_url,
        "OMP_NUM_THREADS": "1",
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
    }
    subprocess.run([TTRL, "db", "upgrade"], env=env, check=True, capture_output=True)
    messages: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(env["NOTIFY_SOCKET"])
        sock.settimeout(0.2)
        proc = subprocess.Popen(
            [TTRL, "serve", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    continue
                if deadline is None and "READY=1" in messages[-1]:
                    deadline = time.monotonic() + seconds
            proc.terminate()
            assert proc.wait(timeout=60) == 0
            sock.setblocking(False)
            while True:
                try:
                    messages.append(sock.recv(4096).decode())
                except BlockingIOError:
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
    return messages


@pytest.mark.slow
def test_ready_status_and_watchdog_while_the_loop_polls(tmp_path: Path) -> None:
    messages = serve_with_notify(tmp_path, {"poll_s": 0.2}, seconds=3)
    assert any(m.startswith("READY=1") and "STATUS=serving version 0" in m for m in messages)
    assert sum(m == "WATCHDOG=1" for m in messages) >= 3  # every 0.5 s for 3 s
    assert any(m.startswith("STOPPING=1") for m in messages)


@pytest.mark.slow
def test_a_stalled_loop_starves_the_watchdog(tmp_path: Path) -> None:
    # The loop sleeps 30 s between polls of the empty queue, longer than stall_s: no ping.
    messages = serve_with_notify(tmp_path, {"poll_s": 30, "stall_s": 0.5}, seconds=3)
    assert any(m.startswith("READY=1") for m in messages)
    assert sum(m == "WATCHDOG=1" for m in messages) <= 1


def test_the_watchdog_is_ours_or_our_launchers(monkeypatch: pytest.MonkeyPatch) -> None:
    from ttrl.daemon.health import watchdog_interval

    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    for pid, expected in ((os.getpid(), 60.0), (os.getppid(), 60.0), (1, None)):
        monkeypatch.setenv("WATCHDOG_PID", str(pid))  # under torchrun: the parent's
        assert watchdog_interval() == expected
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
