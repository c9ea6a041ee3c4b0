"""The objective of one micro-batch: clipped policy gradient, weighted by truncated
importance sampling, plus the KL penalty and entropy bonus, aggregated so that micro-batch
(and rank) losses add up to the mini-batch's exactly; and the scoring passes before it."""

from __future__ import annotations

import torch

from ttrl.rl.config import RLConfig
from ttrl.rl.forward import completion_logprobs
from ttrl.rl.losses import (
    aggregate_loss,
    clipped_policy_loss,
    kl_penalty,
    policy_drift_kl,
    truncated_is_weights,
)
from ttrl.rl.metrics import StepSums
from ttrl.rl.plan import MiniBatch


def score(
    model: torch.nn.Module, mini: MiniBatch, temperature: float, sums: StepSums | None
) -> list[torch.Tensor]:
    """Log-probs of every micro-batch under ``model``; with ``sums``, also the entropy
    metric of the policy before the update."""
    out = []
    for mb in mini.micro:
        logp, ent = completion_logprobs(
            model, mb, temperature=temperature, with_entropy=sums is not None
        )
        out.append(logp)
        if sums is not None and ent is not None:
            sums.add_entropy(ent, mb.response_mask)
    return out


def micro_batch_loss(
    model: torch.nn.Module,
    cfg: RLConfig,
    mini: MiniBatch,
    k: int,
    sums: StepSums,
    entropy_metric: bool,
) -> torch.Tensor:
    """Micro-batch ``k``'s share of the mini-batch objective, normalised by the counts of
    the whole mini-batch so that micro-batch (and rank) losses add up exactly. A loss that
    is not finite comes back NaN, so the gradient is NaN too."""
    mb = mini.micro[k]
    logp, entropy = completion_logprobs(
        model,
        mb,
        temperature=cfg.temperature,
        with_entropy=entropy_metric or cfg.entropy_coef > 0,
        entropy_grad=cfg.entropy_coef > 0,
    )
    # On-policy shortcut: with one optimizer step per batch the old policy *is* the
    # current one, so the detached log-probs are exactly what a recompute would give.
    old = logp.detach() if mini.old_logp is None else mini.old_logp[k]
    mask = mb.response_mask

    def agg(mat: torch.Tensor) -> torch.Tensor:
        return aggregate_loss(
            mat,
            mask,
            cfg.loss_agg,
            num_tokens=mini.num_tokens,
            num_seqs=mini.num_seqs,
            max_len=cfg.max_completion_tokens,
        )

    pg_mat, clipped = clipped_policy_loss(
        logp, old, mb.advantages, cfg.clip_low, cfg.clip_high, cfg.dual_clip
    )
    if cfg.is_correction:
        weights, ratio = truncated_is_weights(old, mb.behaviour_logp, cfg.is_cap)
        pg_mat = pg_mat * weights
        with torch.no_grad():  # masked sums, no host sync per micro-batch
            sums.add_importance(ratio, mask, cfg.is_cap)
    pg = agg(pg_mat)
    loss = pg
    if mini.ref_logp is not None:
        kl = agg(kl_penalty(logp, mini.ref_logp[k], cfg.kl_estimator))
        loss = loss + cfg.kl_coef * kl
        sums.add_kl(kl)
    if cfg.entropy_coef > 0 and entropy is not None:
        loss = loss - cfg.entropy_coef * agg(entropy)
    with torch.no_grad():
        sums.add_loss(loss, pg, clipped, policy_drift_kl(old, logp), mask)
        if entropy_metric and entropy is not None:
            sums.add_entropy(entropy, mask)
    if not torch.isfinite(loss):
        sums.add_nonfinite()
        # Make the gradient NaN too, so the backend's finiteness check (DeepSpeed's
        # overflow check included) skips the update on every rank.
        loss = loss * float("nan")
    return loss
