"""What one trainer step measured: per-rank sums over its micro-batches, reduced over the
ranks once at the end into the :class:`StepMetrics` the daemon stores."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass
class StepMetrics:
    """What one step did; the daemon stores these on the new ``model_versions`` row.

    ``is_*`` describe the importance ratio pi_old / mu over the tokens whose engine logprobs
    were known (NaN/0 without engine logprobs or with ``rl.is_correction`` off).
    """

    version: int
    skipped: bool = False
    skip_reason: str | None = None
    loss: float = math.nan
    """The mean over optimizer steps of the full objective."""
    pg_loss: float = math.nan
    kl: float = math.nan
    entropy: float = math.nan
    """The token-mean entropy of the policy before the update."""
    clip_frac: float = math.nan
    approx_kl: float = math.nan
    """The k3 estimate of KL(old || new) over the updates (0 on the first pass by
    construction)."""
    grad_norm: float = math.nan
    lr: float = math.nan
    """The learning rate of the step's first optimizer step."""
    groups: int = 0
    groups_dropped: int = 0
    groups_low_share: int = 0
    sequences: int = 0
    tokens: int = 0
    mean_reward: float = math.nan
    staleness: int = 0
    is_ratio_mean: float = math.nan
    """Before truncation at ``rl.is_cap``."""
    is_ratio_max: float = math.nan
    is_clip_frac: float = math.nan
    """The share of the ratios truncated."""
    is_tokens: int = 0
    """How many tokens had an engine logprob."""
    optimizer_steps: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int | bool | str | None]:
        return asdict(self)


# Slots of the metric vector summed over micro-batches and ranks.
_LOSS, _PG, _KL, _CLIP, _AKL, _ENT, _ENT_TOK, _TOK, _NONFINITE, _IS, _IS_TOK, _IS_CLIP = range(12)
_SLOTS = 12


class StepSums:
    """The sums of one step on this rank, kept on the device (no host sync per micro-batch)."""

    def __init__(self, device: torch.device, rank: int, world_size: int) -> None:
        self.rank = rank
        self.sums = torch.zeros(_SLOTS, dtype=torch.float64, device=device)
        # Per-rank maximum of the importance ratio, summed into a vector (one slot a rank).
        self.is_max = torch.zeros(world_size, dtype=torch.float64, device=device)

    def add_entropy(self, entropy: torch.Tensor, mask: torch.Tensor) -> None:
        """The entropy of the policy before the update, on the trained tokens."""
        self.sums[_ENT] += (entropy.detach() * mask).sum()
        self.sums[_ENT_TOK] += mask.sum()

    def add_importance(self, ratio: torch.Tensor, mask: torch.Tensor, cap: float) -> None:
        """Importance ratios pi_old / mu (NaN where the engine gave no logprob)."""
        known = ~torch.isnan(ratio) & (mask > 0)
        seen = torch.where(known, ratio, torch.zeros_like(ratio))
        self.sums[_IS] += seen.sum()
        self.sums[_IS_TOK] += known.sum()
        self.sums[_IS_CLIP] += (seen > cap).sum()
        self.is_max[self.rank] = torch.maximum(self.is_max[self.rank], seen.max().double())

    def add_loss(
        self,
        loss: torch.Tensor,
        pg: torch.Tensor,
        clipped: torch.Tensor,
        drift_kl: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        """One micro-batch's loss terms; ``clipped`` and ``drift_kl`` are per token."""
        self.sums[_LOSS] += loss.detach()
        self.sums[_PG] += pg.detach()
        self.sums[_CLIP] += (clipped * mask).sum()
        self.sums[_AKL] += (drift_kl * mask).sum()
        self.sums[_TOK] += mask.sum()

    def add_kl(self, kl: torch.Tensor) -> None:
        """The KL penalty term of one micro-batch."""
        self.sums[_KL] += kl.detach()

    def add_nonfinite(self) -> None:
        """A micro-batch's loss was NaN or inf."""
        self.sums[_NONFINITE] += 1

    def finish(
        self,
        metrics: StepMetrics,
        all_reduce_sum: Callable[[torch.Tensor], torch.Tensor],
        grad_norms: list[float],
    ) -> bool:
        """Reduce over the ranks into ``metrics`` (its ``optimizer_steps`` counted already);
        returns whether some loss was not finite."""
        sums = all_reduce_sum(self.sums).tolist()
        steps = metrics.optimizer_steps
        metrics.loss = sums[_LOSS] / steps
        metrics.pg_loss = sums[_PG] / steps
        metrics.kl = sums[_KL] / steps
        metrics.clip_frac = sums[_CLIP] / max(sums[_TOK], 1.0)
        metrics.approx_kl = sums[_AKL] / max(sums[_TOK], 1.0)
        metrics.entropy = sums[_ENT] / max(sums[_ENT_TOK], 1.0)
        metrics.grad_norm = sum(grad_norms) / len(grad_norms)
        if sums[_IS_TOK] > 0:
            metrics.is_tokens = int(sums[_IS_TOK])
            metrics.is_ratio_mean = sums[_IS] / sums[_IS_TOK]
            metrics.is_clip_frac = sums[_IS_CLIP] / sums[_IS_TOK]
            metrics.is_ratio_max = float(all_reduce_sum(self.is_max).max())
        return bool(sums[_NONFINITE] > 0)
