"""Where the model runs and in what dtype, for the engines and the trainer alike."""

from __future__ import annotations

import os

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(requested: str | None, setting: str) -> torch.device:
    """``None`` or ``"auto"``: this process's CUDA device (``LOCAL_RANK``, 0 without it) when
    CUDA is present, else CPU; an explicit CUDA device must exist. ``setting`` names the
    option in errors (``engine.device``, ``rl.device``).

    Raises:
        ValueError: CUDA was asked for on a machine without it.
    """
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    resolved = torch.device(requested)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting}={requested!r} but CUDA is not available; use cpu or auto")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` is bfloat16 on CUDA (the dtype RL recipes train in) and float32 on CPU.

    Raises:
        ValueError: an unknown dtype name.
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"engine.dtype={dtype!r}; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]
