"""Truncated importance sampling of engine-sampled rollouts: the weights, and the step."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rl_helpers import make_groups

from ttrl.lm.tokens import cut_at_stop
from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.forward import completion_logprobs
from ttrl.rl.losses import truncated_is_weights
from ttrl.rl.packing import TrainSequence, collate
from ttrl.rl.trainer import Trainer

NAN = float("nan")


def test_weights_are_the_ratio_truncated_at_the_cap_and_one_where_unknown() -> None:
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    mu = torch.log(torch.tensor([[0.5, 0.25, 0.1, 1.0]]))
    mu[0, 3] = NAN
    weights, ratio = truncated_is_weights(old, mu, cap=2.0)
    torch.testing.assert_close(weights, torch.tensor([[1.0, 2.0, 2.0, 1.0]]))
    torch.testing.assert_close(ratio[0, :3], torch.tensor([1.0, 2.0, 5.0]))
    assert math.isnan(ratio[0, 3])
    assert not weights.requires_grad


def test_a_huge_log_ratio_stays_finite() -> None:
    weights, ratio = truncated_is_weights(torch.tensor([[0.0]]), torch.tensor([[-1e4]]), cap=3.0)
    assert weights.item() == 3.0 and math.isfinite(ratio.item())


def _with_logprobs(groups: list[RolloutGroup], trainer: Trainer, shift: float) -> list:
    """The groups with engine logprobs: the trainer's own, minus ``shift`` per token."""
    out = []
    for group in groups:
        rollouts = []
        for r in group.rollouts:
            seq = TrainSequence(r.prompt_token_ids, r.completion_token_ids, 0.0)
            with torch.no_grad():
                logp, _ = completion_logprobs(trainer.module, collate([seq], pad_id=0))
            rollouts.append(replace(r, logprobs=(logp[0] - shift).tolist()))
        out.append(RolloutGroup(group.problem_id, rollouts, group.label_share))
    return out


def _step(model_dir: Path, groups: list[RolloutGroup], **cfg: object) -> tuple[object, dict]:
    trainer = Trainer(RLConfig(lr=1e-2, train_samples=None, **cfg), model_dir)
    metrics = trainer.step(groups)
    return metrics, {n: t.clone() for n, t in trainer.named_tensors()}


def test_on_policy_logprobs_change_nothing(tiny_model_dir: Path) -> None:
    groups = make_groups(4, 6)
    probe = Trainer(RLConfig(), tiny_model_dir)
    exact = _with_logprobs(groups, probe, shift=0.0)
    m_plain, w_plain = _step(tiny_model_dir, groups)
    m_is, w_is = _step(tiny_model_dir, exact)
    assert m_plain.is_tokens == 0 and math.isnan(m_plain.is_ratio_mean)
    kept = sum(len(cut_at_stop(r.completion_token_ids, [1])[0]) for g in groups for r in g.rollouts)
    assert m_is.is_tokens == kept
    assert m_is.is_ratio_mean == pytest.approx(1.0, abs=1e-5)
    assert m_is.is_ratio_max == pytest.approx(1.0, abs=1e-5) and m_is.is_clip_frac == 0
    # Weights of 1 +- 1e-7 (two forwards of other batch shapes); Adam's first step moves
    # every weight by ~lr = 1e-2, so a hundredth of a percent of it is rounding.
    assert max(float((w_plain[n] - w_is[n]).abs().max()) for n in w_plain) < 1e-4


def test_a_behaviour_policy_that_found_tokens_unlikely_is_truncated(tiny_model_dir: Path) -> None:
    groups = make_groups(4, 6)
    probe = Trainer(RLConfig(), tiny_model_dir)
    shifted = _with_logprobs(groups, probe, shift=math.log(4.0))  # mu = pi / 4: ratio 4
    m, _ = _step(tiny_model_dir, shifted, is_cap=2.0)
    assert m.is_ratio_mean == pytest.approx(4.0, rel=1e-4)
    assert m.is_ratio_max == pytest.approx(4.0, rel=1e-4) and m.is_clip_frac == 1.0
    # Every token weighs exactly the cap: the policy-gradient loss doubles.
    m_plain, _ = _step(tiny_model_dir, groups)
    assert m.pg_loss == pytest.approx(2.0 * m_plain.pg_loss, rel=1e-5)
    m_off, _ = _step(tiny_model_dir, shifted, is_correction=False)
    assert m_off.is_tokens == 0 and m_off.pg_loss == pytest.approx(m_plain.pg_loss, rel=1e-6)


def test_logprobs_must_match_the_completion(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(), tiny_model_dir)
    bad = [RolloutGroup(0, [Rollout([3, 4], [5, 6, 1], 1.0, 0, logprobs=[-0.1]),
                            Rollout([3, 4], [7, 1], 0.0, 0)])]  # fmt: skip
    with pytest.raises(ValueError, match="1 logprobs for 3 completion tokens"):
        trainer.step(bad)
