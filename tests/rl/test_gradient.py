"""At ratio 1 the clipped GRPO loss has exactly the REINFORCE gradient, per aggregation."""

import pytest
import torch
from rl_helpers import make_groups
from transformers import Qwen2ForCausalLM

from ttrl.lm.tokens import cut_at_stop
from ttrl.rl.advantages import compute_advantages
from ttrl.rl.forward import completion_logprobs
from ttrl.rl.losses import aggregate_loss, clipped_policy_loss
from ttrl.rl.packing import TrainSequence, collate

MAX_LEN = 16


def _token_weights(mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Each token's weight in the batch objective, written out per mode from the papers."""
    n_seqs = mask.shape[0]
    if mode == "token-mean":
        return mask / mask.sum()
    if mode == "seq-mean-token-mean":
        return mask / mask.sum(-1, keepdim=True) / n_seqs
    return mask / MAX_LEN / n_seqs


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_grpo_gradient_equals_reinforce_gradient(tiny_model_dir, mode: str) -> None:
    model = Qwen2ForCausalLM.from_pretrained(tiny_model_dir).double()
    groups = make_groups(3, 4, seed=1)
    rollouts = [r for g in groups for r in g.rollouts]
    group_ids = torch.tensor([i for i, g in enumerate(groups) for _ in g.rollouts])
    rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float64)
    adv = compute_advantages("grpo", rewards, group_ids)
    seqs = [
        TrainSequence(r.prompt_token_ids, cut_at_stop(r.completion_token_ids, [1])[0], float(a))
        for r, a in zip(rollouts, adv, strict=True)
    ]
    mb = collate(seqs, pad_id=0)
    params = [p for p in model.parameters() if p.requires_grad]

    logp, _ = completion_logprobs(model, mb)
    loss_mat, clipped = clipped_policy_loss(logp, logp.detach(), adv, 0.2, 0.28, dual_clip=3.0)
    grpo = aggregate_loss(loss_mat, mb.response_mask, mode, max_len=MAX_LEN)
    grpo_grads = torch.autograd.grad(grpo, params, retain_graph=True)

    weights = _token_weights(mb.response_mask.double(), mode)
    reinforce = -(adv[:, None] * weights * logp).sum()
    reinforce_grads = torch.autograd.grad(reinforce, params)

    assert clipped.sum() == 0
    # At ratio 1 the surrogate's value is -sum(A * w): only its gradient carries the policy.
    assert grpo.item() == pytest.approx(-(adv[:, None] * weights).sum().item(), abs=1e-12)
    for g, r in zip(grpo_grads, reinforce_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
    assert sum(g.abs().sum() for g in grpo_grads) > 0
