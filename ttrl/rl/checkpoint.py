"""Atomic ``save_pretrained`` checkpoints: a reader sees the old state or the whole new one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ttrl.crashpoints import crash_point

# A checkpoint being written is ``.<name>.tmp-<random>`` beside its final ``<name>``.
PARTIAL = ".tmp-"


def partial_checkpoints(root: Path, names: str) -> list[Path]:
    """The unfinished writes under ``root`` of checkpoints named like the glob ``names``:
    what a crash during :func:`save_checkpoint` leaves (only the writer may remove them: a
    reader would delete a write in progress)."""
    return sorted(root.glob(f".{names}{PARTIAL}*"))


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
) -> Path:
    """Write config, tokenizer and safetensors weights to ``path`` via a temp dir + rename.

    ``state_dict`` holds the full weights (gathered first under ZeRO-3); ``model`` supplies
    the config and the tied-weight rules of ``save_pretrained``. The temp dir sits next to
    ``path`` so the final ``rename`` stays on one filesystem and is atomic. An existing
    ``path`` is never overwritten: versions are immutable.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"checkpoint {path} already exists; pick a new version directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{PARTIAL}", dir=path.parent))
    try:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        crash_point("checkpoint_files")
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
