"""Where a completion ends: the one rule the engines (sampling) and the trainer (training)
share, so that both see the same completion.

Imports nothing heavy (the tokenizer and configs are only read).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# "stop": a stop token ended the completion; "length": the token budget ran out first.
FinishReason = Literal["stop", "length"]


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, *configs: object) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS, then the ``eos_token_id`` (an
    id or a list of ids) of each of ``configs`` (the model's generation config and config;
    None where there is none), without repeats.

    Chat models often stop on an end-of-turn token listed only in ``generation_config``
    (Qwen2.5-Instruct: ``<|im_end|>`` besides ``<|endoftext|>``).

    Raises:
        ValueError: neither the tokenizer nor any config names an EOS token.
    """
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id, *(getattr(c, "eos_token_id", None) for c in configs)]
    for candidate in candidates:
        for token in candidate if isinstance(candidate, list) else [candidate]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    if not ids:
        raise ValueError(
            "the model has no EOS token (tokenizer.eos_token and the eos_token_id of its "
            "configs are all unset), so completions could never stop; set eos_token in the "
            "tokenizer"
        )
    return ids


def pad_token_id(tokenizer: PreTrainedTokenizerBase, stop_ids: Sequence[int]) -> int:
    """The id that pads a batch: the tokenizer's pad token, else the first stop id (padding
    is masked out, so any id serves)."""
    pad = tokenizer.pad_token_id
    return int(stop_ids[0]) if pad is None else int(pad)


def cut_at_stop(
    token_ids: Sequence[int], stop_ids: Sequence[int]
) -> tuple[list[int], FinishReason]:
    """Cut generated ids after the first stop token.

    Returns the kept ids (stop token included) and ``"stop"``, or all ids and
    ``"length"`` when no stop token occurs (the token budget ran out). Anything after the
    stop token is padding of a finished row in a batch.
    """
    stops = set(stop_ids)
    for i, token in enumerate(token_ids):
        if token in stops:
            return list(token_ids[: i + 1]), "stop"
    return list(token_ids), "length"
