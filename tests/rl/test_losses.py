"""Policy loss, KL, entropy and loss aggregation against hand-computed float64 values."""

import math

import pytest
import torch

from ttrl.rl.losses import (
    aggregate_loss,
    clipped_policy_loss,
    entropy_from_logits,
    kl_penalty,
    policy_drift_kl,
)

F64 = torch.float64
RATIOS = torch.tensor([0.5, 0.8, 0.9, 1.0, 1.25, 1.28, 1.5], dtype=F64)
LOW, HIGH = 0.2, 0.28  # DAPO clip-higher: ratio kept in [0.8, 1.28]


def _loss(ratios, adv, dual=None):
    logp = ratios.log().clone().requires_grad_(True)
    loss, clipped = clipped_policy_loss(
        logp[None], torch.zeros_like(logp)[None], torch.tensor([adv], dtype=F64), LOW, HIGH, dual
    )
    loss.sum().backward()
    return loss[0].detach(), clipped[0], logp.grad


def test_positive_advantage_clips_only_above_1_plus_clip_high() -> None:
    loss, clipped, grad = _loss(RATIOS, 1.0)
    expected = torch.tensor([-0.5, -0.8, -0.9, -1.0, -1.25, -1.28, -1.28], dtype=F64)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    assert clipped.tolist() == [0, 0, 0, 0, 0, 0, 1]
    # d(-A * ratio)/dlogp = -A * ratio where unclipped, 0 where clipped.
    torch.testing.assert_close(grad, torch.where(clipped.bool(), 0.0, -RATIOS), rtol=0, atol=1e-12)


def test_negative_advantage_clips_only_below_1_minus_clip_low() -> None:
    loss, clipped, grad = _loss(RATIOS, -2.0)
    expected = 2.0 * torch.tensor([0.8, 0.8, 0.9, 1.0, 1.25, 1.28, 1.5], dtype=F64)
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    assert clipped.tolist() == [1, 0, 0, 0, 0, 0, 0]
    torch.testing.assert_close(
        grad, torch.where(clipped.bool(), 0.0, 2 * RATIOS), rtol=0, atol=1e-12
    )


def test_dual_clip_caps_negative_advantages_only() -> None:
    ratios = torch.tensor([1.5, 4.0], dtype=F64)
    loss, clipped, grad = _loss(ratios, -1.0, dual=3.0)
    torch.testing.assert_close(loss, torch.tensor([1.5, 3.0], dtype=F64), rtol=0, atol=1e-12)
    assert clipped.tolist() == [0, 1]
    torch.testing.assert_close(grad, torch.tensor([1.5, 0.0], dtype=F64), rtol=0, atol=1e-12)
    pos, pos_clipped, _ = _loss(ratios, 1.0, dual=3.0)
    torch.testing.assert_close(pos, torch.tensor([-1.28, -1.28], dtype=F64), rtol=0, atol=1e-12)
    assert pos_clipped.tolist() == [1, 1]


def test_token_level_advantages_are_accepted() -> None:
    logp = torch.log(torch.tensor([[1.0, 2.0]], dtype=F64))
    loss, _ = clipped_policy_loss(
        logp, torch.zeros_like(logp), torch.tensor([[1.0, -1.0]]), 0.2, 0.2
    )
    torch.testing.assert_close(loss, torch.tensor([[-1.0, 2.0]], dtype=F64))


def test_kl_estimators_hand_values() -> None:
    logp = torch.tensor([math.log(0.5), math.log(0.3)], dtype=F64)
    ref = torch.tensor([math.log(0.25), math.log(0.3)], dtype=F64)
    torch.testing.assert_close(
        kl_penalty(logp, ref, "k1"), torch.tensor([math.log(2), 0.0], dtype=F64)
    )
    # k3 = exp(ref - logp) - (ref - logp) - 1 = 0.5 + ln 2 - 1.
    torch.testing.assert_close(
        kl_penalty(logp, ref, "k3"), torch.tensor([math.log(2) - 0.5, 0.0], dtype=F64)
    )
    with pytest.raises(ValueError, match="k1"):
        kl_penalty(logp, ref, "k2")


def test_entropy_hand_values() -> None:
    logits = torch.tensor(
        [[0.0, 0.0, 0.0, 0.0], [math.log(0.75), math.log(0.25), -1e9, -1e9]], dtype=F64
    )
    expected = [math.log(4), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor(expected, dtype=F64))


# Two sequences: 3 tokens and 1 token; padding holds garbage that the mask must hide.
LOSS = torch.tensor([[1.0, 2.0, 3.0, 1e9], [4.0, 1e9, 1e9, 1e9]], dtype=F64)
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=F64)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", (1 + 2 + 3 + 4) / 4),
        ("seq-mean-token-mean", ((1 + 2 + 3) / 3 + 4 / 1) / 2),
        ("seq-mean-token-sum-norm", ((1 + 2 + 3) / 8 + 4 / 8) / 2),
    ],
)
def test_aggregation_hand_values(mode: str, expected: float) -> None:
    got = aggregate_loss(LOSS, MASK, mode, max_len=8)
    assert got.item() == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_split_batches_with_global_counts_sum_to_the_whole(mode: str) -> None:
    whole = aggregate_loss(LOSS, MASK, mode, max_len=8)
    parts = sum(
        aggregate_loss(
            LOSS[i : i + 1], MASK[i : i + 1], mode, num_tokens=4.0, num_seqs=2, max_len=8
        )
        for i in range(2)
    )
    assert parts.item() == pytest.approx(whole.item(), rel=1e-15)


def test_aggregation_errors_are_named() -> None:
    with pytest.raises(ValueError, match="max_len"):
        aggregate_loss(LOSS, MASK, "seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_loss(LOSS, MASK, "sum")


def test_policy_drift_kl_estimates_kl_old_to_new_from_the_old_policys_tokens() -> None:
    """approx_kl once summed exp(old - new) - 1 - (old - new): chi-square minus KL: 0.19
    here for a true KL of 0.12. The estimate must match the exact KL(old || new)."""
    old_p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=F64)
    new_p = torch.tensor([0.7, 0.2, 0.05, 0.05], dtype=F64)
    exact = float((old_p * (old_p / new_p).log()).sum())
    tokens = torch.multinomial(
        old_p, 400_000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    old_logp, new_logp = old_p.log()[tokens], new_p.log()[tokens]
    estimate = float(policy_drift_kl(old_logp, new_logp).mean())
    assert estimate == pytest.approx(exact, rel=0.02)
    wrong_direction = float(((old_logp - new_logp).exp() - 1 - (old_logp - new_logp)).mean())
    assert abs(wrong_direction - exact) > 0.05  # the old formula, for the record
    assert float(policy_drift_kl(old_logp, old_logp).abs().max()) == 0.0


def test_the_log_ratio_clamp_changes_a_surviving_gradient_of_a_negative_advantage() -> None:
    """With A < 0 the unclipped term -A * ratio wins the max at every ratio above
    1 - clip_low, so PPO's clip keeps its gradient; past the clamp (log ratio > 20) the
    gradient is 0, where the surrogate's own is -A * ratio. dual_clip bounds it by design."""
    loss, clipped, grad = _loss(torch.tensor([19.0, 25.0], dtype=F64).exp(), -1.0)
    assert clipped.tolist() == [0, 0]  # PPO's clip removes neither gradient
    assert float(grad[0]) == pytest.approx(math.exp(19.0), rel=1e-12)
    assert float(grad[1]) == 0.0  # not exp(25): the clamp dropped it
    assert float(loss[1]) == pytest.approx(math.exp(20.0), rel=1e-12)
