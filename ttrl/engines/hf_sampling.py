"""What HFEngine adds to transformers ``generate``: the behaviour policy's logprob of every
sampled token, and seeded sampling that leaves the caller's random state alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import LogitsProcessor


class SampledLogprobs(LogitsProcessor):
    """Records log p(sampled token) under the sampling distribution, one step at a time.

    transformers runs custom processors before its temperature/top-k/top-p warpers, so
    ``scores`` here are the model's logits; they are divided by ``temperature`` here, as
    the trainer does, so the logprobs are those of the behaviour policy (what vLLM's
    ``processed_logprobs`` reports; equal to it when top-k and top-p are off). The token
    sampled at step t is only known at step t+1 (as the last input id), so each step's
    log-softmax waits one call; the last one is resolved by :meth:`result`. Memory: one
    (batch, vocab) tensor, not one per step.
    """

    def __init__(self, temperature: float) -> None:
        self._temperature = temperature if temperature > 0 else 1.0
        self._pending: torch.Tensor | None = None
        self._steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self._steps.append(self._pending.gather(1, input_ids[:, -1:]).squeeze(1))
        self._pending = torch.log_softmax(scores.float() / self._temperature, dim=-1)
        return scores

    def result(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(batch, steps) logprobs of ``new_tokens``, the ids generate appended."""
        if self._pending is None:
            raise RuntimeError("no decoding step was recorded")
        last = self._pending.gather(1, new_tokens[:, -1:]).squeeze(1)
        return torch.stack([*self._steps, last], dim=1)


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run under a fixed seed without disturbing the caller's global RNG state."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
