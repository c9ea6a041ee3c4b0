"""The on-disk layout of model versions: resume point, crash clean-up and pruning."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ttrl.daemon.checkpoints import Checkpoints, MissingCheckpoint
from ttrl.rl.checkpoint import PARTIAL


def version_dir(checkpoints: Checkpoints, version: int) -> Path:
    path = checkpoints.path(version)
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_the_resume_point_is_the_newest_active_version_or_the_base(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "ckpt", keep=3)
    base = tmp_path / "base"
    assert checkpoints.resume_point(None, base) == (0, base)
    v2 = version_dir(checkpoints, 2)
    assert v2.name == "v000002"
    assert checkpoints.resume_point((2, str(v2)), base) == (2, v2)
    with pytest.raises(MissingCheckpoint, match="restore that directory"):
        checkpoints.resume_point((3, str(checkpoints.path(3))), base)
    with pytest.raises(MissingCheckpoint, match="status to 'retired'"):
        checkpoints.resume_point((4, None), base)


def test_a_crash_leaves_nothing_that_looks_like_a_version(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path, keep=3)
    # An unfinished write, named as save_checkpoint names it, and a finished version.
    partial = Path(tempfile.mkdtemp(prefix=f".v000003{PARTIAL}", dir=tmp_path))
    done = version_dir(checkpoints, 2)
    checkpoints.remove_partial()
    assert not partial.exists() and done.exists()
    # Files written but never recorded (a crash before the version's row): removed first.
    unrecorded = version_dir(checkpoints, 3)
    assert checkpoints.fresh_path(3) == unrecorded and not unrecorded.exists()


def test_pruning_keeps_the_newest_the_serving_and_the_rollback_target(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path, keep=2)
    dirs = {v: version_dir(checkpoints, v) for v in range(1, 7)}
    checkpoints.prune(serving=3, rollback_target=str(dirs[1]))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "v000001",  # the guard's rollback target
        "v000003",  # serving
        "v000005",
        "v000006",
    ]
