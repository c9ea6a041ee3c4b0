"""Left padding: one batch of token rows, each flush against the right edge.

The engines pad prompts for sampling and the trainer pads prompt + completion for its
log-prob pass the same way, with the positions a row would have alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class LeftPadded(NamedTuple):
    """A left-padded batch, all ``[rows, width]`` long tensors."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(mask) - 1`` clamped at 0: the first real token is position 0 whatever the
    padding, exactly as generation numbers positions. Without it a left-padded row would
    be trained at shifted positions the sampler never used."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> LeftPadded:
    """Left-pad ``rows`` with ``pad_id`` to the longest; mask 1 on real tokens, position ids
    from the mask (:func:`position_ids_from_mask`).

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("left_pad needs at least one row")
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, ids in enumerate(rows):
        input_ids[r, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[r, width - len(ids) :] = 1
    return LeftPadded(input_ids, attention_mask, position_ids_from_mask(attention_mask))
