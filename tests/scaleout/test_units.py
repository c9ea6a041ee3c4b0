"""The scale-out units pass `systemd-analyze verify` (ExecStart pointed at this venv) and keep
ttrl.service's hardening and restart policy."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ["ttrl-rollout@.service", "ttrl-learner.service"]


def directives(text: str) -> set[str]:
    """``Key=value`` lines, comments left out."""
    return {line.strip() for line in text.splitlines() if re.match(r"^[A-Z]\w*=", line)}


def hardening() -> set[str]:
    """ttrl.service's sandboxing lines (its paths aside: each role writes its own)."""
    text = (SYSTEMD / "ttrl.service").read_text()
    block = text.split("# Hardening", 1)[1].split("[Install]", 1)[0]
    return {d for d in directives(block) if not d.startswith("ReadWritePaths=")}


@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs it in CI)")
    text = (SYSTEMD / name).read_text()
    assert hardening() <= directives(text), hardening() - directives(text)
    assert {"Type=notify", "RestartPreventExitStatus=78", "KillSignal=SIGTERM"} <= directives(text)
    assert "EnvironmentFile=/etc/ttrl/ttrl.env" in directives(text)
    unit = tmp_path / name
    unit.write_text(text.replace("/opt/ttrl/.venv/bin/", f"{Path(sys.executable).parent}/"))
    r = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert name.split("@")[0].removesuffix(".service") not in r.stderr, r.stderr  # no warning


def test_rollout_instance_is_a_gpu() -> None:
    lines = directives((SYSTEMD / "ttrl-rollout@.service").read_text())
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in lines
    exec_start = next(d for d in lines if d.startswith("ExecStart="))
    assert exec_start.endswith("serve --config /etc/ttrl/ttrl.yaml --role rollout")
    assert "WatchdogSec=120" in lines and "NotifyAccess=main" in lines


def test_learner_runs_under_torchrun() -> None:
    lines = directives((SYSTEMD / "ttrl-learner.service").read_text())
    exec_start = next(d for d in lines if d.startswith("ExecStart="))
    assert exec_start.startswith("ExecStart=/opt/ttrl/.venv/bin/torchrun --standalone ")
    assert "--no-python /opt/ttrl/.venv/bin/ttrl serve" in exec_start
    assert exec_start.endswith("--role learner")
    # Rank 0 (a child of torchrun) notifies and feeds the watchdog systemd addresses to its
    # parent; SIGTERM reaches torchrun alone, which forwards it once and then exits 1.
    assert {"NotifyAccess=all", "KillMode=mixed", "SuccessExitStatus=1"} <= lines
    assert "WatchdogSec=120" in lines
    assert "ReadWritePaths=/var/lib/ttrl /srv/ttrl/checkpoints" in lines
