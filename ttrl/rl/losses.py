"""Per-token policy-gradient terms and the one helper that turns them into a scalar loss.

Every function takes ``[batch, tokens]`` tensors; ``mask`` is 1 on completion tokens that
are trained and 0 on padding (and on anything after the first EOS).
"""

from __future__ import annotations

import torch

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), as a per-token loss.

    ``ratio = exp(logp - old_logp)``; the loss is ``max(-A*ratio, -A*clip(ratio, 1-clip_low,
    1+clip_high))``. Separate low/high bounds are DAPO's clip-higher (Yu et al. 2025). With
    ``dual_clip = c`` the loss of a negative advantage is further capped at ``-A*c``
    (dual-clip PPO, Ye et al. 2020), so a huge ratio cannot dominate the batch.

    ``advantages`` is ``[batch]`` (one per sequence) or ``[batch, tokens]``. Returns the loss
    and a 0/1 tensor marking tokens whose gradient the clipping removed.
    """
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    # Clamping the log ratio keeps exp finite for a wildly off-policy token. It is not free:
    # with A < 0 and a huge ratio, the unclipped term -A * ratio wins the max and keeps its
    # gradient, and beyond the clamp (log ratio > 20) the clamp passes none. Such a token's
    # push is then dropped instead of unbounded; dual_clip bounds it by design (-A * c).
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    was_clipped = clipped > unclipped
    if dual_clip is not None:
        capped = torch.minimum(loss, -advantages * dual_clip)
        loss = torch.where(advantages < 0, capped, loss)
        was_clipped = was_clipped | ((advantages < 0) & (loss < torch.maximum(unclipped, clipped)))
    return loss, was_clipped.to(logp.dtype)


def truncated_is_weights(
    old_logp: torch.Tensor, behaviour_logp: torch.Tensor, cap: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated importance sampling (TIS) of rollouts another engine sampled.

    The rollout engine (vLLM kernels, a version up to ``daemon.max_staleness`` old) is the
    behaviour policy mu; the trainer's log-probs before the update are pi_old. Each token's
    loss is weighted by ``min(pi_old / mu, cap)`` (Yao et al. 2025, "Your efficient RL
    framework secretly brings you off-policy RL training"; verl's ``tis_imp_ratio_cap``,
    TRL's ``vllm_importance_sampling_cap``): the truncation bounds the variance a token
    that mu found unlikely would add. A NaN in ``behaviour_logp`` (no engine logprob for
    that row) gives weight 1. Returns the detached weights and the untruncated ratios
    (NaN where unknown), both ``[batch, tokens]``.
    """
    log_ratio = (old_logp - behaviour_logp).clamp(max=20.0)  # exp stays finite; NaN stays NaN
    ratio = torch.exp(log_ratio).detach()
    weights = torch.where(torch.isnan(ratio), torch.ones_like(ratio), ratio.clamp(max=cap))
    return weights, ratio


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from samples of the policy (Schulman 2020).

    ``k1``: ``logp - ref_logp`` (unbiased, high variance, can be negative).
    ``k3`` ("low_var_kl"): ``exp(ref - logp) - (ref - logp) - 1`` (unbiased, always >= 0),
    the estimator of DeepSeekMath's GRPO (eq. 4); clamped to [-10, 10] for stability.
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        neg = (-log_ratio).clamp(-20.0, 20.0)
        return (torch.exp(neg) - neg - 1.0).clamp(-10.0, 10.0)
    raise ValueError(f"unknown kl estimator {estimator!r}; choose 'k1' or 'k3'")


def policy_drift_kl(old_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(old || new) from tokens the old policy sampled: how far
    an update moved the policy (the ``approx_kl`` metric). It is :func:`kl_penalty` with the
    old policy in the place of the sampling one; ``exp(old - new) - 1 - (old - new)``, the
    other direction of the ratio, estimates chi-square minus KL instead."""
    return kl_penalty(old_logp, logp, "k3")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last axis: ``logsumexp(z) - sum(softmax(z) * z)``."""
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    max_len: int | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar, in one of the three modes of the literature.

    - ``token-mean`` (DAPO, Yu et al. 2025): ``sum(l*m) / num_tokens``; every token weighs
      the same, so long completions are not down-weighted.
    - ``seq-mean-token-mean`` (GRPO, Shao et al. 2024, eq. 3): mean over sequences of the
      per-sequence token mean.
    - ``seq-mean-token-sum-norm`` (Dr. GRPO, Liu et al. 2025): mean over sequences of the
      token sum divided by a constant ``max_len`` (the generation budget), removing the
      length bias of ``1/|o_i|``.

    ``num_tokens`` / ``num_seqs`` default to the counts in this tensor. A trainer that splits
    a batch into micro-batches (or ranks) passes the counts of the whole batch instead, so
    that summing the micro-batch losses gives exactly the loss of the whole batch.
    """
    mask = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        denom = mask.sum() if num_tokens is None else num_tokens
        return (loss_mat * mask).sum() / denom
    n_seqs = loss_mat.shape[0] if num_seqs is None else num_seqs
    if mode == "seq-mean-token-mean":
        per_seq = (loss_mat * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / n_seqs
    if mode == "seq-mean-token-sum-norm":
        if max_len is None:
            raise ValueError("seq-mean-token-sum-norm needs max_len (rl.max_completion_tokens)")
        return (loss_mat * mask).sum() / max_len / n_seqs
    raise ValueError(f"unknown loss aggregation {mode!r}; choose one of {LOSS_AGG_MODES}")
