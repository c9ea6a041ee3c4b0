"""Every subpackage of ttrl/ is listed in pyproject.toml, so the wheel carries it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_declared() -> None:
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "ttrl").rglob("__init__.py")
    }
    assert found <= declared, f"add to [tool.setuptools] packages: {sorted(found - declared)}"


def test_import_ttrl_pulls_no_gpu_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ttrl, ttrl.cli; "
        "print(sorted(m for m in ('vllm', 'deepspeed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_wheel_carries_migrations_configs_and_the_tiny_model(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("ttrl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "ttrl/migrations/env.py",
        "ttrl/migrations/versions/0001_initial_schema.py",
        "ttrl/configs/default.yaml",
        "ttrl/configs/deepspeed/zero2.json",
        "ttrl/toy/model/config.json",
        "ttrl/toy/model/model.safetensors",
    ):
        assert needed in names, f"{needed} missing from the wheel"
