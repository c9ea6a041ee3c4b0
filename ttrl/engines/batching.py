"""Packing (prompt, completion count) rows into batches under a token budget.

A pure planning step: the HF engine runs each planned batch through one ``generate``
call. Rows cost KV-cache memory for the longest prompt in their batch plus the new
tokens, so prompts are grouped by length (little padding) and the ``n`` samples of a
prompt stay in one batch whenever they fit.
"""

from __future__ import annotations

from collections.abc import Sequence

# One entry of a batch: (prompt index, how many completions of it to sample here).
Row = tuple[int, int]


def plan_batches(
    prompt_lengths: Sequence[int],
    rows_per_prompt: int,
    max_new_tokens: int,
    max_batch_tokens: int,
) -> list[list[Row]]:
    """Split ``rows_per_prompt`` samples of every prompt into batches.

    Prompts are taken longest first, so each batch's first prompt is its longest and a
    batch holds at most ``max_batch_tokens // (that length + max_new_tokens)`` rows (at
    least one, even if a single row exceeds the budget). A prompt's rows start a new
    batch rather than being split, unless they exceed a whole batch. Every prompt's
    chunks come out in order, so concatenating them per prompt keeps sample order.

    Raises:
        ValueError: a non-positive count or budget.
    """
    if rows_per_prompt < 1 or max_new_tokens < 1 or max_batch_tokens < 1:
        raise ValueError(
            f"rows_per_prompt={rows_per_prompt}, max_new_tokens={max_new_tokens} and "
            f"max_batch_tokens={max_batch_tokens} must all be >= 1"
        )
    order = sorted(range(len(prompt_lengths)), key=lambda i: -prompt_lengths[i])
    batches: list[list[Row]] = []
    current: list[Row] = []
    used = capacity = 0
    for index in order:
        remaining = rows_per_prompt
        while remaining:
            if not current:
                row_tokens = prompt_lengths[index] + max_new_tokens
                capacity = max(1, max_batch_tokens // row_tokens)
            space = capacity - used
            if space < min(remaining, capacity):
                batches.append(current)
                current, used = [], 0
                continue
            take = min(remaining, space)
            current.append((index, take))
            used += take
            remaining -= take
    if current:
        batches.append(current)
    return batches
