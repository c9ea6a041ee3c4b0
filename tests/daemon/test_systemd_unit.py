"""The shipped unit file passes `systemd-analyze verify` (ExecStart pointed at this venv)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ttrl.service"


def test_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs it in CI)")
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "EnvironmentFile=" in text
    unit = tmp_path / "ttrl.service"
    unit.write_text(
        text.replace("/opt/ttrl/.venv/bin/ttrl", str(Path(sys.executable).with_name("ttrl")))
    )
    r = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ttrl.service" not in r.stderr, r.stderr  # no warning about our unit
