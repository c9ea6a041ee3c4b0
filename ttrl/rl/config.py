"""Configuration of the GRPO trainer (mounted at ``rl:`` in the config tree).

Kept free of torch imports so that loading the config stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AdvantageName = Literal["grpo", "dr_grpo", "reinforce"]
LossAggName = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
KLEstimatorName = Literal["k1", "k3"]


class RLConfig(BaseModel):
    """Every knob of one TTRL update: which rollouts, which objective, which optimiser."""

    model_config = ConfigDict(extra="forbid")

    # Which rollouts are trained on.
    train_samples: int | None = Field(
        32,
        ge=1,
        description="M: rollouts per problem kept for training out of the N voted on "
        "(TTRL votes on 64, trains on 32). None keeps all N.",
    )
    drop_uniform_groups: bool = Field(
        True,
        description="Drop groups whose rewards are all equal before the step (DAPO dynamic "
        "sampling): under a group baseline they have zero advantage.",
    )
    min_label_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Groups whose pseudo-label won less than this share of the N votes are "
        "not trained on (still answered): a plurality of a few scattered votes is often wrong. "
        "0 trains on every group.",
    )
    seed: int = Field(0, description="Seeds the choice of the M rollouts and mini-batch order.")

    # Objective.
    advantage: AdvantageName = Field(
        "grpo", description="grpo: (r-mean)/(std+eps); dr_grpo: r-mean; reinforce: raw r."
    )
    adv_eps: float = Field(1e-6, gt=0, description="eps of the GRPO std normalisation.")
    clip_low: float = Field(0.2, ge=0, lt=1, description="Ratio lower clip: 1 - clip_low.")
    clip_high: float = Field(
        0.2, ge=0, description="Ratio upper clip: 1 + clip_high (DAPO clip-higher: 0.28)."
    )
    dual_clip: float | None = Field(
        None, gt=1, description="Dual-clip bound c for negative advantages (Ye et al. 2020: 3.0)."
    )
    loss_agg: LossAggName = Field("token-mean", description="How token losses become one loss.")
    max_completion_tokens: int = Field(
        3072,
        ge=1,
        description="The generation budget; the constant divisor of seq-mean-token-sum-norm.",
    )
    temperature: float = Field(
        1.0, gt=0, description="Sampling temperature of the rollouts; logits are divided by it."
    )
    is_correction: bool = Field(
        True,
        description="Weigh each token by min(pi_old / mu, is_cap), mu the engine that "
        "sampled it (truncated importance sampling): corrects for the rollout engine's "
        "kernels and for rollouts up to daemon.max_staleness versions old. Needs the "
        "engine's logprobs (the daemon then records them); rows without them weigh 1.",
    )
    is_cap: float = Field(
        2.0, gt=0, description="Truncation bound of the importance weight (verl, TRL: 2-3)."
    )
    kl_coef: float = Field(0.0, ge=0, description="Weight of KL to the frozen reference; 0 = off.")
    kl_estimator: KLEstimatorName = Field("k3", description="k1: log ratio; k3: low-variance KL.")
    entropy_coef: float = Field(0.0, ge=0, description="Weight of the entropy bonus; 0 = off.")

    # Optimisation.
    lr: float = Field(1e-6, gt=0)
    norm_lr_scale: float = Field(
        1.0,
        gt=0,
        description="Learning rate of the normalisation gains (RMSNorm/LayerNorm weights), as "
        "a multiple of lr. Sharpening a policy is mostly a change of their scale, which AdamW "
        "moves by about lr per step: a small model at a small lr needs thousands of steps.",
    )
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(
        0, ge=0, description="Linear learning-rate warm-up, in optimizer steps."
    )
    lr_decay_steps: int | None = Field(
        None,
        ge=1,
        description="Cosine decay of the learning rate to lr_decay_floor * lr over this many "
        "optimizer steps after the warm-up, then held there. A trainer built at version v "
        "(restart, rollback) resumes it at v * ppo_epochs * mini_batches steps. None: constant.",
    )
    lr_decay_floor: float = Field(0.1, ge=0, le=1, description="See lr_decay_steps.")
    max_grad_norm: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    ppo_epochs: int = Field(1, ge=1, description="Passes over each batch.")
    mini_batches: int = Field(
        1, ge=1, description="Optimizer steps per epoch (rollouts dealt by mini_batch_split)."
    )
    mini_batch_split: Literal["groups", "rollouts"] = Field(
        "rollouts",
        description="How an update's rollouts are dealt into the mini_batches steps: "
        "rollouts (shuffled singly, as TRL does: every step sees most problems) or groups "
        "(each group's rollouts in one step: a step sees mini_batches times fewer problems).",
    )
    micro_batch_tokens: int = Field(
        16384, ge=1, description="Token budget of one forward/backward, padding included."
    )
    recompute_old_logprobs: Literal["auto", "always"] = Field(
        "auto",
        description="auto: skip the extra forward when there is one optimizer step per batch "
        "(old logprobs then equal the current ones exactly).",
    )
    gradient_checkpointing: bool = False

    # Where it runs.
    device: str | None = Field(None, description="None: cuda when available, else cpu.")
    deepspeed_config: Path | None = Field(
        None, description="A DeepSpeed JSON (configs/deepspeed/zero2.json); None = plain torch."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> RLConfig:
        if self.advantage == "reinforce" and self.drop_uniform_groups:
            raise ValueError(
                "rl.drop_uniform_groups=true would drop groups that carry gradient under "
                "rl.advantage='reinforce' (no group baseline); set rl.drop_uniform_groups=false"
            )
        return self
