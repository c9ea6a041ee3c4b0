"""Where model versions live on disk: one directory a version, ``<checkpoint_dir>/v000042``.

This module owns the layout, the resume point, the clean-up a crash needs and the pruning
of old versions. The files of one version are written atomically by
:func:`ttrl.rl.checkpoint.save_checkpoint` (a temporary directory renamed into place): a
directory named like a version is complete."""

from __future__ import annotations

import shutil
from pathlib import Path

from loguru import logger

VERSION_GLOB = "v[0-9]*"  # the directories of versions, named by Checkpoints.path


class MissingCheckpoint(RuntimeError):
    """The active model version's files are gone; the message says what to do."""


class Checkpoints:
    """The version directories under ``root`` (``daemon.checkpoint_dir``)."""

    def __init__(self, root: str | Path, keep: int) -> None:
        self.root = Path(root)
        self.keep = keep

    def path(self, version: int) -> Path:
        return self.root.resolve() / f"v{version:06d}"

    def resume_point(self, newest: tuple[int, str | None] | None, base: Path) -> tuple[int, Path]:
        """``(version, files)`` to serve at start: the newest active version ``newest`` (from
        ``model_versions``), or the base model at version 0 when there is none."""
        if newest is None:
            return 0, base
        version, path = newest
        if not (path and (Path(path) / "config.json").is_file()):
            # Serving the base model under later version numbers would mislabel every
            # vote; the operator must restore the files or retire the version.
            raise MissingCheckpoint(
                f"model version {version} is active but its checkpoint {path} is missing or "
                "incomplete: restore that directory, or set that version's status to "
                "'retired' in model_versions to resume from the one before"
            )
        return version, Path(path)

    def remove_partial(self) -> None:
        """Remove the temporary directories of writes a crash left unfinished (only the
        writer may: a rollout worker would delete a write in progress)."""
        from ttrl.rl.checkpoint import partial_checkpoints  # torch: only where it trains

        for partial in partial_checkpoints(self.root, VERSION_GLOB):
            logger.warning("removing {}: a checkpoint a crash left unfinished", partial)
            shutil.rmtree(partial, ignore_errors=True)

    def fresh_path(self, version: int) -> Path:
        """The directory for a new ``version``; one left by a crash between the files and
        the version's row (never published) is removed first."""
        path = self.path(version)
        if path.exists():
            logger.warning("removing unrecorded checkpoint {}", path)
            shutil.rmtree(path)
        return path

    def prune(self, serving: int, rollback_target: str | None) -> None:
        """Keep the newest ``keep`` directories, the serving version's and the guard's
        rollback target."""
        keep = {self.path(serving).resolve()}
        if rollback_target:
            keep.add(Path(rollback_target).resolve())
        dirs = sorted(p for p in self.root.glob(VERSION_GLOB) if p.is_dir())
        for old in dirs[: -self.keep]:
            if old.resolve() not in keep:
                shutil.rmtree(old, ignore_errors=True)
