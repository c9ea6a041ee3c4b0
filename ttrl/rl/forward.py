"""The training forward: per-token log-probabilities of the completion tokens."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ttrl.rl.losses import entropy_from_logits
from ttrl.rl.packing import MicroBatch


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; plain fp32 elsewhere (CPU bf16 is slow and imprecise)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def completion_logprobs(
    model: torch.nn.Module,
    mb: MicroBatch,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log p(token_t | tokens_<t)`` on the last ``R`` columns of ``mb`` (``[B, R]``, fp32 or
    wider), and the entropy of each of those next-token distributions when asked (detached
    unless ``entropy_grad``, which an entropy bonus needs).

    ``position_ids`` come from the attention mask, so a left-padded row is scored at the
    positions it was sampled at. Logits are divided by the sampling temperature so the
    trained policy is the one that sampled (as verl does). Only ``R + 1`` positions go
    through the LM head.
    """
    device = mb.input_ids.device
    resp = mb.response_len
    with autocast_for(device):
        out = model(
            input_ids=mb.input_ids,
            attention_mask=mb.attention_mask,
            position_ids=mb.position_ids,
            logits_to_keep=resp + 1,
            use_cache=False,
        )
    # Position t predicts token t+1: drop the logits of the last position.
    logits = out.logits[:, :-1]
    if logits.dtype in (torch.bfloat16, torch.float16):
        # log-softmax over a large vocabulary loses too much in half precision.
        logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = -F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), mb.targets.reshape(-1), reduction="none"
    ).view(mb.targets.shape)
    entropy = None
    if with_entropy:
        with contextlib.nullcontext() if entropy_grad else torch.no_grad():
            entropy = entropy_from_logits(logits)
    return logp, entropy
