"""From sequences to left-padded tensors, and from a batch to equal-count micro-batches.

Layout: each row is ``[pad ... pad, prompt, completion]``. Left padding puts every
completion flush against the right edge, so the last ``R`` columns (``R`` = longest
completion) hold all trained tokens and the LM head only has to run on ``R + 1`` positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ttrl.lm.padding import left_pad


@dataclass(frozen=True)
class TrainSequence:
    """One rollout ready for training: completion cut after its first EOS, with the
    engine's logprob of each of its tokens when recorded (``behaviour_logp``)."""

    prompt: list[int]
    completion: list[int]
    advantage: float
    behaviour_logp: list[float] | None = None

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.completion)


@dataclass
class MicroBatch:
    """Tensors of one forward/backward. ``response_*`` are the last ``R`` columns."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    response_mask: torch.Tensor  # [B, R], float: 1 on trained completion tokens
    advantages: torch.Tensor  # [B]
    behaviour_logp: torch.Tensor  # [B, R], float: the engine's logprobs, NaN where unknown

    @property
    def response_len(self) -> int:
        return self.response_mask.shape[1]

    @property
    def targets(self) -> torch.Tensor:
        """The token ids the last ``R`` logits positions predict."""
        return self.input_ids[:, -self.response_len :]

    def to(self, device: torch.device | str) -> MicroBatch:
        return MicroBatch(*(t.to(device) for t in (
            self.input_ids, self.attention_mask, self.position_ids,
            self.response_mask, self.advantages, self.behaviour_logp,
        )))  # fmt: skip


def collate(seqs: Sequence[TrainSequence], pad_id: int) -> MicroBatch:
    """Left-pad sequences into one :class:`MicroBatch` (:func:`~ttrl.lm.padding.left_pad`:
    position ids from the attention mask, as the engines sample)."""
    if not seqs:
        raise ValueError("collate needs at least one sequence")
    padded = left_pad([s.prompt + s.completion for s in seqs], pad_id)
    resp = max(len(s.completion) for s in seqs)
    response_mask = torch.zeros((len(seqs), resp), dtype=torch.float32)
    behaviour = torch.full((len(seqs), resp), float("nan"), dtype=torch.float32)
    for row, s in enumerate(seqs):
        response_mask[row, resp - len(s.completion) :] = 1.0
        if s.behaviour_logp is not None:
            behaviour[row, resp - len(s.completion) :] = torch.tensor(s.behaviour_logp)
    return MicroBatch(
        input_ids=padded.input_ids,
        attention_mask=padded.attention_mask,
        position_ids=padded.position_ids,
        response_mask=response_mask,
        advantages=torch.tensor([s.advantage for s in seqs], dtype=torch.float32),
        behaviour_logp=behaviour,
    )


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Pack indices into micro-batches of at most ``token_budget`` padded tokens
    (rows x longest row); a sequence longer than the budget gets a micro-batch of its own.

    Longest first, so rows of similar length share a micro-batch and padding stays small.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _split_to_count(batches: list[list[int]], count: int) -> list[list[int]]:
    """Halve the fullest micro-batches until there are ``count``; pad with empty ones when
    there are fewer sequences than ``count``."""
    batches = [list(b) for b in batches]
    while len(batches) < count:
        biggest = max(range(len(batches)), key=lambda j: len(batches[j]), default=None)
        if biggest is None or len(batches[biggest]) < 2:
            batches.append([])
            continue
        b = batches.pop(biggest)
        batches[biggest:biggest] = [b[: len(b) // 2], b[len(b) // 2 :]]
    return batches


def shard_micro_batches(
    lengths: Sequence[int], world_size: int, token_budget: int
) -> list[list[list[int]]]:
    """Per rank, the micro-batches (indices into ``lengths``) of one optimizer step.

    Every rank gets the same number of micro-batches, some possibly empty: under ZeRO each
    forward and backward is a collective, so ranks must run them in lockstep. Sequences are
    dealt longest-first round-robin so ranks get similar token counts. Every rank computes
    the same plan from the same global batch, so no communication is needed.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    shards = [order[r::world_size] for r in range(world_size)]
    plans = []
    for shard in shards:
        local = plan_micro_batches([lengths[i] for i in shard], token_budget)
        plans.append([[shard[j] for j in mb] for mb in local])
    count = max(len(p) for p in plans)
    return [_split_to_count(p, count) for p in plans]
