"""Checking a weight update (names, shapes, completeness, finite values) before it is served.

Checks run in full before anything is copied, so a refused update leaves the engine
serving the previous version untouched. What a model expects and what a checkpoint holds
are read by :mod:`ttrl.lm.tensors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ttrl.engines.base import NamedTensors, WeightUpdateError
from ttrl.lm.files import ModelFilesError
from ttrl.lm.tensors import WeightSpecs, read_checkpoint

_MAX_LISTED = 5


def check_complete(required: frozenset[str], tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse an update that leaves out a parameter (engines that rebuild fused layers
    from every piece, as vLLM's reload does, would serve garbage for the rest).

    Raises:
        WeightUpdateError: naming the missing parameters.
    """
    missing = sorted(required - tensors.keys())
    if missing:
        raise WeightUpdateError(
            f"weight update lacks {len(missing)} parameter(s) of the served model "
            f"({_listed(missing)}); this engine takes complete updates only: send every "
            "parameter (Trainer.named_tensors() does)"
        )


def check_named_tensors(
    expected: WeightSpecs, named_tensors: NamedTensors
) -> dict[str, torch.Tensor]:
    """Validate an update's names, shapes and dtype kinds against the served model.

    A subset is allowed (frozen weights need not be resent); a float tensor may come in
    another float dtype (it is cast on copy). Values are not inspected: see
    :func:`check_finite`. Meta tensors are fine here.

    Returns:
        The tensors by name.

    Raises:
        WeightUpdateError: nothing given, a duplicate or unknown name, a wrong shape, or
            an integer tensor for a float weight.
    """
    tensors: dict[str, torch.Tensor] = {}
    duplicates: list[str] = []
    for name, tensor in named_tensors:
        if name in tensors:
            duplicates.append(name)
        tensors[name] = tensor
    if not tensors:
        raise WeightUpdateError("weight update holds no tensors; send (name, tensor) pairs")
    if duplicates:
        raise WeightUpdateError(f"weight update names some tensors twice: {_listed(duplicates)}")
    unknown = [name for name in tensors if name not in expected]
    if unknown:
        raise WeightUpdateError(
            f"weight update has {len(unknown)} name(s) the served model lacks: "
            f"{_listed(unknown)}; names must match the model's state_dict keys (e.g. "
            f"{next(iter(expected))!r}); strip wrapper prefixes such as 'module.'"
        )
    for name, tensor in tensors.items():
        shape, dtype = expected[name]
        if tuple(tensor.shape) != tuple(shape):
            raise WeightUpdateError(
                f"weight {name!r} has shape {tuple(tensor.shape)}, the served model expects "
                f"{tuple(shape)}; was the update made for another model?"
            )
        if dtype.is_floating_point and not tensor.dtype.is_floating_point:
            raise WeightUpdateError(
                f"weight {name!r} has dtype {tensor.dtype}, expected a float dtype like {dtype}"
            )
    return tensors


def check_finite(tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or inf (a diverged update must never be served).

    Fast path: one sum per tensor and one sync per device; a sum is non-finite iff some
    element is (short of an overflow no trained weights reach). Only a failing update
    pays for the per-tensor search that names the culprit.

    Raises:
        WeightUpdateError: naming the first non-finite tensor.
    """
    floats = {name: t for name, t in tensors.items() if t.dtype.is_floating_point}
    if not floats:
        return
    sums: dict[torch.device, list[torch.Tensor]] = {}
    for tensor in floats.values():
        sums.setdefault(tensor.device, []).append(tensor.sum(dtype=torch.float32))
    if all(bool(torch.isfinite(torch.stack(group)).all()) for group in sums.values()):
        return
    for name, tensor in floats.items():
        if not bool(torch.isfinite(tensor).all()):
            raise WeightUpdateError(f"weight {name!r} holds NaN or inf; refusing the update")
    raise WeightUpdateError("weight update overflows float32 when summed; refusing it")


def check_finite_files(model_dir: Path) -> int:
    """Refuse a model directory whose weights hold NaN or inf (a header can be intact over
    poisoned data): :func:`check_finite` on each tensor as it is read, so memory holds one
    tensor at a time. Returns the tensors checked.

    Raises:
        ModelFilesError: naming the directory and the first non-finite tensor.
    """
    checked = 0
    for name, tensor in read_checkpoint(Path(model_dir)):
        checked += 1
        try:
            check_finite({name: tensor})
        except WeightUpdateError:
            raise ModelFilesError(
                f"weights in {model_dir}: tensor {name!r} holds NaN or inf: every sample "
                f"would fail; restore {model_dir} from a good copy"
            ) from None
    return checked


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")
