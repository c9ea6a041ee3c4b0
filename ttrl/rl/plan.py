"""The data of one trainer step: voted groups -> sequences with advantages -> optimizer
steps (mini-batches) -> this rank's token-budgeted micro-batches."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ttrl.lm.tokens import cut_at_stop
from ttrl.rl.advantages import compute_advantages
from ttrl.rl.batch import RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.packing import MicroBatch, TrainSequence, collate, shard_micro_batches


def train_sequences(
    groups: Sequence[RolloutGroup], config: RLConfig, stop_ids: Sequence[int]
) -> tuple[list[TrainSequence], list[int]]:
    """Flatten groups into sequences with their advantages (computed in float64), and the
    group index of each sequence.

    A completion is cut after its first stop token (:func:`~ttrl.lm.tokens.cut_at_stop`, the
    rule the engines apply): the stop token is trained (a sampled action), never what an
    engine left after it. The engine's logprobs come along with ``rl.is_correction``.
    """
    rewards: list[float] = []
    group_ids: list[int] = []
    for g_idx, group in enumerate(groups):
        rewards += [r.reward for r in group.rollouts]
        group_ids += [g_idx] * len(group.rollouts)
    adv = compute_advantages(
        config.advantage,
        torch.tensor(rewards, dtype=torch.float64),
        torch.tensor(group_ids),
        config.adv_eps,
    ).tolist()
    rollouts = [r for g in groups for r in g.rollouts]
    correct = config.is_correction
    seqs = []
    for r, a in zip(rollouts, adv, strict=True):
        completion = cut_at_stop(r.completion_token_ids, stop_ids)[0]
        behaviour = r.logprobs[: len(completion)] if correct and r.logprobs else None
        seqs.append(TrainSequence(list(r.prompt_token_ids), completion, a, behaviour))
    return seqs, group_ids


def step_chunks(
    group_of_seq: Sequence[int], steps: int, split: str, rng: random.Random
) -> list[list[int]]:
    """Sequence indices per optimizer step, in a random order: ``split="groups"`` keeps each
    group in one step; ``"rollouts"`` deals the sequences out singly (TRL's shuffle), so
    every step sees most problems. At most ``steps`` steps, none empty."""
    if split == "rollouts":
        units = [[i] for i in range(len(group_of_seq))]
    else:
        by_group: dict[int, list[int]] = {}
        for i, g in enumerate(group_of_seq):
            by_group.setdefault(g, []).append(i)
        units = list(by_group.values())
    rng.shuffle(units)
    n = min(steps, len(units))
    chunks = [units[k * len(units) // n : (k + 1) * len(units) // n] for k in range(n)]
    return [sorted(i for unit in chunk for i in unit) for chunk in chunks]


@dataclass
class MiniBatch:
    """The micro-batches of one optimizer step on this rank, with global normalisers."""

    micro: list[MicroBatch]
    num_tokens: float
    num_seqs: int
    old_logp: list[torch.Tensor] | None = None
    ref_logp: list[torch.Tensor] | None = None


def mini_batches(
    seqs: list[TrainSequence],
    group_of_seq: list[int],
    config: RLConfig,
    rng: random.Random,
    *,
    rank: int,
    world_size: int,
    pad_id: int,
    device: torch.device,
) -> list[MiniBatch]:
    """Split the sequences into ``rl.mini_batches`` optimizer steps (:func:`step_chunks`),
    then shard each into this rank's micro-batches (on ``device``)."""
    minis = []
    for idx in step_chunks(group_of_seq, config.mini_batches, config.mini_batch_split, rng):
        plan = shard_micro_batches(
            [seqs[i].length for i in idx], world_size, config.micro_batch_tokens
        )[rank]
        micro = [
            collate([seqs[idx[j]] for j in mb], pad_id)
            if mb
            else _padding_batch(seqs[idx[0]], pad_id)
            for mb in plan
        ]
        minis.append(
            MiniBatch(
                micro=[m.to(device) for m in micro],
                num_tokens=float(sum(len(seqs[i].completion) for i in idx)),
                num_seqs=len(idx),
            )
        )
    return minis


def _padding_batch(seq: TrainSequence, pad_id: int) -> MicroBatch:
    """A micro-batch that trains nothing, for a rank with fewer sequences than its peers
    have micro-batches (every rank must run the same number of forwards under ZeRO)."""
    mb = collate([seq], pad_id)
    mb.response_mask.zero_()
    mb.advantages.zero_()
    return mb
