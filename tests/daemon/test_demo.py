"""`ttrl demo` end to end on a small budget: real loop, before/after figures, plot, JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
        "pass1_before",
        "pass1_after",
        "maj_before",
        "maj_after",
        "greedy_before",
        "greedy_after",
        "versions",
        "seconds",
    }
    rates = ("pass1_before", "pass1_after", "greedy_before", "greedy_after")
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
def test_demo_stops_at_max_versions(tmp_path: Path) -> None:
    """--max-versions ends the loop at that many versions, long before --minutes."""
    args = ["--seed", "4", "--minutes", "10", "--problems", "8", "--max-versions", "1"]
    r = demo(*args, "--workdir", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["versions"] == 1 and summary["seconds"] < 300
