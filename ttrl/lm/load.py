"""Building the model and the tokenizer from a model directory: safetensors weights only (see
:mod:`ttrl.lm.files`), remote code only when the configuration says so, and every failure
reported with the directory named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttrl.lm.files import ModelFilesError, check_model_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def load_causal_lm(
    model_dir: Path, *, trust_remote_code: bool = False, **kwargs: Any
) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` from safetensors only, after
    :func:`check_model_dir`; ``kwargs`` go to ``from_pretrained`` (e.g. ``dtype``).

    Raises:
        FileNotFoundError, ModelFilesError: as :func:`check_model_dir`, or any other
            failure to build the model from the files, with the directory named.
    """
    from transformers import AutoModelForCausalLM

    check_model_dir(model_dir)
    try:
        return AutoModelForCausalLM.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs
        )
    except Exception as exc:  # whatever the files hold, the operator needs the directory
        raise ModelFilesError(
            f"cannot load the model in {model_dir}: {type(exc).__name__}: "
            f"{_shape_report(model_dir, trust_remote_code) or exc}"
        ) from exc


def _shape_report(model_dir: Path, trust_remote_code: bool) -> str | None:
    """What transformers 5 only prints as a table before its error ("see the report
    above"): the tensors whose shapes in the files differ from config.json's."""
    from ttrl.lm.tensors import checkpoint_specs, model_weight_specs

    try:
        wanted = model_weight_specs(model_dir, trust_remote_code)
        found = checkpoint_specs(model_dir)
    except Exception:  # the original error is the better report then
        return None
    wrong = [
        f"{name} is {tuple(found[name][0])} in the files, {tuple(shape)} by config.json"
        for name, (shape, _) in wanted.items()
        if name in found and found[name][0] != shape
    ]
    if not wrong:
        return None
    more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
    return "size mismatch: " + "; ".join(wrong[:3]) + more


def load_tokenizer(model_dir: Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer the directory's files describe, failures reported as :class:`ModelFilesError`.

    A ``tokenizer.json`` saved as a plain fast tokenizer (``tokenizer_class``
    ``PreTrainedTokenizerFast`` / ``TokenizersBackend``, as the tiny model's is) loads as
    exactly that pipeline. ``AutoTokenizer`` of transformers 5 would swap in the model
    type's own class instead (``Qwen2Tokenizer`` for any ``qwen2`` config, rebuilding a
    byte-level pipeline that silently drops the spaces of a character tokenizer).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        if _names_plain_fast_tokenizer(model_dir):
            return PreTrainedTokenizerFast.from_pretrained(model_dir)
        return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except Exception as exc:  # whatever the files hold, the operator needs the directory
        raise ModelFilesError(
            f"cannot load the tokenizer in {model_dir}: {type(exc).__name__}: {exc}"
        ) from exc


def _names_plain_fast_tokenizer(model_dir: Path) -> bool:
    config = model_dir / "tokenizer_config.json"
    if not (model_dir / "tokenizer.json").is_file() or not config.is_file():
        return False
    name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class")
    return name in ("PreTrainedTokenizerFast", "TokenizersBackend")
