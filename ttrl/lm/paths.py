"""Where model weights live: local directories and the names of models shipped with ttrl.

Imports nothing heavy, so configs can resolve paths without loading torch.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_PREFIX = "builtin:"

# The tiny model trained and shipped by ttrl.toy (see docs/tiny-model.md).
BUILTIN_MODELS: dict[str, Path] = {
    "tiny": Path(__file__).resolve().parent.parent / "toy" / "model",
}


def resolve_model_path(spec: str | Path) -> Path:
    """Turn a model spec into an existing local directory.

    ``spec`` is either ``"builtin:<name>"`` (a model shipped inside the package, e.g.
    ``"builtin:tiny"``) or a path to a directory saved with ``save_pretrained``. Hub ids
    are not accepted: ttrl never downloads weights.

    Raises:
        ValueError: an unknown builtin name.
        FileNotFoundError: the directory does not exist or holds no ``config.json``.
    """
    text = str(spec)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_MODELS:
            known = ", ".join(BUILTIN_PREFIX + k for k in sorted(BUILTIN_MODELS))
            raise ValueError(f"unknown builtin model {text!r}; known: {known}")
        path = BUILTIN_MODELS[name]
        hint = "the shipped model files are missing; reinstall ttrl or run `ttrl toy build`"
    else:
        path = Path(text).expanduser()
        hint = (
            "give a local directory saved with save_pretrained (ttrl downloads nothing; "
            "fetch hub models yourself first)"
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model {text!r}: no config.json in {path}; {hint}")
    return path
