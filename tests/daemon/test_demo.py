"""`ttrl demo` end to end on a small budget: real loop, before/after figures, plot, JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

TTRL = str(Path(sys.executable).with_name("ttrl"))


def demo(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [TTRL, "demo", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.mark.slow
def test_demo_reports_before_after_and_plots(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    r = demo("--seed", "3", "--minutes", "0.25", "--problems", "8", "--workdir", str(workdir))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(summary) == {
        "answers_before",
        "answers_after",
        "pass1_before",
        "pass1_after",
        "maj_before",
        "maj_after",
        "greedy_before",
        "greedy_after",
        "versions",
        "seconds",
    }
    rates = [f"{k}_{when}" for k in ("pass1", "greedy", "answers") for when in ("before", "after")]
    assert all(0.0 <= summary[k] <= 1.0 for k in rates)
    assert summary["seconds"] >= 15  # the loop ran for its budget
    assert "votes by model version" in r.stdout
    assert f"the 8 problems, base model -> version {summary['versions']}" in r.stdout
    change = summary["pass1_after"] - summary["pass1_before"]
    assert f"{summary['pass1_before']:.3f}" in r.stdout and f"{change:+.3f}" in r.stdout
    png = workdir / "ttrl-demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (workdir / "ttrl.db").exists()

    again = demo("--minutes", "0.1", "--workdir", str(workdir), timeout=120)
    assert again.returncode == 2 and "already holds a demo database" in again.stderr


@pytest.mark.slow
def test_demo_without_the_plot_extra_warns_first_and_keeps_its_results(tmp_path: Path) -> None:
    """Without matplotlib the demo died after its whole loop, losing the result table."""
    fake = tmp_path / "site"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(fake)}
    workdir = tmp_path / "demo"
    args = ["--minutes", "5", "--problems", "4", "--max-versions", "1", "--workdir", str(workdir)]
    r = subprocess.run(
        [TTRL, "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "matplotlib is missing" in r.stderr.split("evaluating the base model")[0]
    assert "no plot (matplotlib is missing)" in r.stdout
    assert "answers (the daemon's labels)" in r.stdout
    assert json.loads(r.stdout.strip().splitlines()[-1])["versions"] == 1
    assert not (workdir / "ttrl-demo.png").exists()


@pytest.mark.slow
def test_demo_stops_at_max_versions(tmp_path: Path) -> None:
    """--max-versions ends the loop at that many versions, long before --minutes."""
    args = ["--seed", "4", "--minutes", "10", "--problems", "8", "--max-versions", "1"]
    r = demo(*args, "--workdir", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["versions"] == 1 and summary["seconds"] < 300


@pytest.mark.slow
def test_demo_keeps_and_prints_its_work_dir_and_sets_threads(tmp_path: Path) -> None:
    """Without --workdir the database used to be deleted at exit, so the README's follow-up
    commands had nothing to read; and torch kept its default threads on a busy host."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["TMPDIR"] = str(tmp_path)
    r = subprocess.run(
        [TTRL, "demo", "--seed", "5", "--minutes", "0.1", "--problems", "4", "--max-versions", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("work dir: "))
    where = Path(line.removeprefix("work dir: ").split(" (")[0])
    assert where.parent == tmp_path and (where / "ttrl.db").is_file()
    assert f"ttrl status --db sqlite:///{where / 'ttrl.db'}" in line
    assert "loop stopped at" in r.stdout
    status = subprocess.run(
        [TTRL, "status", "--db", f"sqlite:///{where / 'ttrl.db'}"],
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0 and "demo-seed-5" in status.stdout
    assert "torch CPU threads: " in r.stderr


def test_host_threads_leave_room_on_a_small_or_busy_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from ttrl import demo as d

    cases = {(2, 0.0): 2, (2, 1.7): 1, (2, 0.9): 1, (8, 0.2): 4, (8, 6.5): 2, (16, 14.6): 1}
    cases |= {(1, 0.0): 1, (4, 9.0): 1}
    for (cores, busy), threads in cases.items():
        monkeypatch.setattr(d.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        monkeypatch.setattr(d, "busy_cores", lambda busy=busy: busy)
        assert d.host_threads() == threads, (cores, busy)


def test_busy_cores_are_measured_now_not_a_minute_ago() -> None:
    from ttrl import demo as d

    # user nice system idle iowait irq softirq steal: 300 of 400 jiffies idle or iowait
    assert d.busy_share([0] * 8, [80, 0, 20, 250, 50, 0, 0, 0]) == pytest.approx(0.25)
    assert d.busy_share([5] * 8, [5] * 8) == 0.0  # no time passed: nothing measured busy
    # A core spinning while it is measured counts as busy.
    spinning = threading.Event()

    def spin() -> None:
        while not spinning.is_set():
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert d.busy_cores(0.5) >= 0.6
    finally:
        spinning.set()
        worker.join()
