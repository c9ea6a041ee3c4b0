"""Reading a model directory safely: safetensors weights only, and a clear error naming the
directory when its files are unusable.

Pickle-based weights (``pytorch_model.bin``, ``*.pt``) can run arbitrary code while they
load, so ttrl never reads them. A directory is checked before anything heavy is loaded:
every ``*.json`` must parse, ``config.json`` must name a ``model_type``, and every
safetensors header must be intact and cover its file (a truncated file fails here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from safetensors import safe_open

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class ModelFilesError(ValueError):
    """A model directory holds corrupt or unusable files; the message names them."""


def safetensors_files(model_dir: Path) -> list[Path]:
    """The ``*.safetensors`` files of ``model_dir``, sorted.

    Raises:
        FileNotFoundError: none there; the message says how to convert pickle weights.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in Path(model_dir).glob("*") if p.suffix in _PICKLE_SUFFIXES)
    found = (
        f"it holds only pickle weights ({', '.join(pickles)}), which ttrl never loads because "
        "unpickling can run arbitrary code; convert them once, where you trust the file: "
        "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, "
        "safe_serialization=True)"
        if pickles
        else "save the checkpoint with save_pretrained(..., safe_serialization=True)"
    )
    raise FileNotFoundError(f"no *.safetensors file in {model_dir}; {found}")


@contextmanager
def open_safetensors(file: Path, device: str = "cpu") -> Iterator[safe_open]:
    """``safe_open`` with a corrupt or truncated file reported as :class:`ModelFilesError`."""
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(file), framework="pt", device=device)
    except (SafetensorError, OSError) as exc:
        raise ModelFilesError(
            f"weights file {file} is corrupt or truncated ({exc}); restore the directory "
            f"{file.parent} from a good copy"
        ) from None
    with handle:
        yield handle


def check_model_dir(model_dir: Path) -> None:
    """Refuse a model directory whose files cannot be what ``from_pretrained`` expects.

    Reads the JSON files and the safetensors headers only, never the weights.

    Raises:
        FileNotFoundError: no ``config.json``, or no safetensors weights.
        ModelFilesError: a JSON file does not parse, ``config.json`` names no model type,
            or a weights file is corrupt or truncated.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"model directory {model_dir} has no config.json; give a directory written by "
            "save_pretrained"
        )
    for file in sorted(model_dir.glob("*.json")):
        try:
            data = json.loads(file.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFilesError(
                f"{file} is not valid JSON ({exc}); the model directory {model_dir} is "
                "corrupt: restore it from a good copy"
            ) from None
        if file.name == "config.json" and not (
            isinstance(data, dict) and isinstance(data.get("model_type"), str)
        ):
            raise ModelFilesError(
                f"{file} names no model_type; it is not a transformers model config "
                f"(is {model_dir} a model directory?)"
            )
    for file in safetensors_files(model_dir):
        with open_safetensors(file):
            pass


_FINGERPRINT_SAMPLES = 16
_FINGERPRINT_CHUNK = 1 << 16


def fingerprint(model_dir: Path) -> str:
    """A SHA-256 that tells one model's files from another's without reading them whole:
    ``config.json``, then per safetensors file its name, size, header and 16 chunks of
    64 KiB spread evenly over its data. Hex digest."""
    import hashlib
    import struct

    model_dir = Path(model_dir)
    digest = hashlib.sha256((model_dir / "config.json").read_bytes())
    for file in safetensors_files(model_dir):
        size = file.stat().st_size
        digest.update(f"{file.name}\0{size}\0".encode())
        with file.open("rb") as handle:
            head = handle.read(8)
            header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            digest.update(handle.read(min(header_len, size)))
            start = 8 + header_len
            span = max(size - start - _FINGERPRINT_CHUNK, 0)
            for i in range(_FINGERPRINT_SAMPLES):
                handle.seek(start + span * i // max(_FINGERPRINT_SAMPLES - 1, 1))
                digest.update(handle.read(_FINGERPRINT_CHUNK))
    return digest.hexdigest()
