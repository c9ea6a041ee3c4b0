"""Named weight tensors of a model directory: what its config builds, what its checkpoint holds.

Both are read without loading any weights into a model: the config builds the model on the
meta device, the checkpoint is read from its safetensors headers (or streamed tensor by
tensor).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from ttrl.lm.files import open_safetensors, safetensors_files

# name -> (shape, dtype) of every weight a model holds.
WeightSpecs = Mapping[str, tuple[torch.Size, torch.dtype]]

_SAFETENSORS_FLOATS = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}


def model_weight_specs(
    model_dir: Path, trust_remote_code: bool = False
) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Names, shapes and dtypes of the ``state_dict`` of the model saved in ``model_dir``.

    The model is built on the meta device from its config: no weights are read or
    allocated. Tied weights appear under both names, as in ``state_dict()``.
    """
    model = _meta_model(model_dir, trust_remote_code)
    return {name: (t.shape, t.dtype) for name, t in model.state_dict().items()}


def model_parameter_names(model_dir: Path, trust_remote_code: bool = False) -> frozenset[str]:
    """The parameters a complete update must hold: tied weights once, under the name the
    trainer exports (``named_parameters``), no buffers."""
    model = _meta_model(model_dir, trust_remote_code)
    return frozenset(name for name, _ in model.named_parameters())


def _meta_model(model_dir: Path, trust_remote_code: bool) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def checkpoint_specs(model_dir: Path) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Names, shapes and dtypes in a safetensors checkpoint, read from the headers only.

    Non-float tensors are reported as ``torch.int64``: only float-ness is checked.
    """
    specs: dict[str, tuple[torch.Size, torch.dtype]] = {}
    for file in safetensors_files(model_dir):
        with open_safetensors(file) as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a Mapping
                view = handle.get_slice(name)
                dtype = _SAFETENSORS_FLOATS.get(view.get_dtype(), torch.int64)
                specs[name] = (torch.Size(view.get_shape()), dtype)
    return specs


def read_checkpoint(model_dir: Path, device: str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    """Stream ``(name, tensor)`` from every safetensors file of ``model_dir`` onto ``device``.

    Raises:
        FileNotFoundError: no safetensors file in ``model_dir``.
        ModelFilesError: a file is corrupt or truncated.
    """
    for file in safetensors_files(model_dir):
        with open_safetensors(file, device) as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a Mapping
                yield name, handle.get_tensor(name)
