"""Configuration of the service loop (mounted at ``daemon:`` in the config tree).

It lives beside :class:`ttrl.config.Settings`, not in ``ttrl.daemon``: the daemon reads the
settings, and the settings must not import the daemon."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["all", "rollout", "learner"]


class PassesConfig(BaseModel):
    """The pass policy (``ttrl.daemon.passes``), mounted at ``daemon.passes``."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["fixed", "adaptive"] = Field(
        "fixed",
        description="fixed: every problem gets the passes it was enqueued with. adaptive: a "
        "problem whose label is confident and stable is settled before its passes run out; "
        "a split vote gets more passes, up to max_passes (docs/training.md).",
    )
    settle_share: float = Field(
        1.0,
        gt=0.5,
        le=1,
        description="adaptive: a pass is confident when its label won at least this share.",
    )
    settle_after: int = Field(
        2,
        ge=1,
        description="adaptive: this many passes in a row, confident, on one label (compared "
        "canonically) settle the problem: done, the passes left unspent.",
    )
    split_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="adaptive: a pass whose label won less than this share is split: when the "
        "problem's passes are spent it gets one more, up to max_passes.",
    )
    max_passes: int = Field(
        4, ge=1, description="adaptive: passes in all a split problem may be given."
    )

    @model_validator(mode="after")
    def _split_below_settle(self) -> PassesConfig:
        if self.split_share > self.settle_share:
            raise ValueError(
                f"daemon.passes.split_share ({self.split_share}) is above settle_share "
                f"({self.settle_share}): a vote would be confident and split at once; "
                "lower split_share"
            )
        return self


class ReplayConfig(BaseModel):
    """The selective sample buffer (``ttrl.daemon.replay``), mounted at ``daemon.replay``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Keep groups that carried signal and replay them to fill an update whose "
        "fresh groups carry too little (docs/training.md).",
    )
    fill_to: int | None = Field(
        None,
        ge=1,
        description="Informative groups an update should have; fresh ones first, replays fill "
        "the rest. None: daemon.update_every_groups.",
    )
    max_groups: int = Field(64, ge=1, description="Groups the buffer holds, at most.")
    max_replays: int = Field(2, ge=1, description="Times one group is replayed, at most.")


class DaemonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = Field(
        "all",
        description="all: claim, sample, vote and train in one process; rollout: claim, sample "
        "and vote, follow the learner's versions; learner: train on the rollouts in the "
        "database and publish versions (docs/scale-out.md).",
    )
    version_poll_s: float = Field(
        5.0,
        gt=0,
        description="Rollout workers check for a new active version this often (and at once "
        "on a PostgreSQL NOTIFY).",
    )
    votes: int = Field(16, ge=1, description="N: rollouts sampled and voted on per problem.")
    vote_window: int = Field(
        1,
        ge=1,
        description="Passes pooled into a problem's vote: its label (answer and pseudo-label) "
        "is the majority of this pass's N answers and those of its previous window-1 passes.",
    )
    updates: bool = Field(True, description="Train on the votes; false: answer only.")
    update_every_groups: int = Field(
        16, ge=1, description="B: update once this many voted groups wait untrained..."
    )
    update_every_s: float = Field(
        300.0, gt=0, description="T: ...or this long after the last update, whichever first."
    )
    max_staleness: int = Field(
        1, ge=0, description="S: train only on rollouts of the last S+1 model versions."
    )
    max_groups_per_update: int = Field(64, ge=1, description="Most groups one update takes.")
    passes: PassesConfig = PassesConfig()
    replay: ReplayConfig = ReplayConfig()
    checkpoint_dir: str = Field("checkpoints", description="Where model versions are written.")
    keep_checkpoints: int = Field(
        3, ge=1, description="Newest checkpoint directories kept (the active one always)."
    )
    poll_s: float = Field(2.0, gt=0, description="Idle wait between claims of an empty queue.")
    heartbeat_s: float = Field(10.0, gt=0)
    reap_every_s: float = Field(30.0, gt=0, description="Expired leases are reclaimed this often.")
    retention_days: float = Field(
        7.0, gt=0, description="Rollout texts already trained on are pruned after this age."
    )
    grace_s: float = Field(
        30.0, gt=0, description="After SIGTERM: time to finish the batch in flight."
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus metrics on 127.0.0.1:PORT; None: off."
    )
    stall_s: float = Field(
        1800.0,
        gt=0,
        description="systemd's watchdog is fed only while the loop passed a step (claim, "
        "sampling, store, update) within this long: longer than your slowest update.",
    )
    breaker_failures: int = Field(
        8,
        ge=2,
        description="Circuit breaker: this many problems in a row failing with the same "
        "engine error (or a whole batch of two or more) mean the engine, not the problems, "
        "is broken: the claims go back unspent and the worker exits 79 "
        "(docs/hardening.md).",
    )
    verify_weights: bool = Field(
        True,
        description="Read every weight of the base model and of a checkpoint before it "
        "serves, refusing NaN or inf (costs one read of the files at start).",
    )
    new_lineage: bool = Field(
        False,
        description="When engine.model is not the base model the database's versions "
        "descend from: start a new lineage from it (the old versions are retired) instead "
        "of refusing to start. Set it for one start.",
    )
    outage_alert_s: float = Field(
        300.0,
        gt=0,
        description="After this long without the database, say so as an error in the log "
        "and the systemd status line (the daemon keeps retrying).",
    )


GuardAction = Literal["alert", "hold", "rollback"]


class GuardConfig(BaseModel):
    """The collapse guard (``ttrl.daemon.guard``), mounted at ``guard:`` in the config tree."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Probe every new version before it serves.")
    action: GuardAction = Field(
        "rollback",
        description="When a signal trips: alert (log and record only), hold (keep serving, "
        "stop updating), rollback (serve the best version so far again, mark the new one "
        "rolled_back).",
    )
    saturation_action: GuardAction = Field(
        "alert",
        description="Action of the vote-share saturation signal alone: a converged model is "
        "also unanimous, so by default it only alerts.",
    )
    every_updates: int = Field(
        1, ge=1, description="Probe the new versions numbered a multiple of k (restarts too)."
    )
    every_s: float | None = Field(
        900.0, gt=0, description="Also probe the serving version this often; None: never."
    )
    probe_prompts: int = Field(
        16, ge=1, description="Recent non-canary prompts in the probe (fixed once chosen)."
    )
    max_canaries: int = Field(64, ge=0, description="Canary prompts in the probe, at most.")
    canary_batches: list[str] = Field(
        ["canary"],
        description="Batches whose problems (with reference answers) are canaries: voted on "
        "and probed, never trained on.",
    )
    probe_samples: int = Field(8, ge=2, description="Samples per probe prompt.")
    seed: int = Field(0, description="Sampling seed of the probe: versions see the same dice.")
    max_vote_share: float = Field(
        0.995, gt=0, le=1, description="Saturation: mean majority share at or above this."
    )
    min_entropy_ratio: float = Field(
        0.1,
        ge=0,
        description="Entropy drop: per-token negative log-likelihood of the probe samples "
        "below this fraction of the baseline's.",
    )
    max_kl: float | None = Field(
        None,
        gt=0,
        description="KL from the reference model per token (the trainer's, rl.kl_coef > 0 "
        "loads it); None: not checked.",
    )
    min_length_ratio: float = Field(0.5, gt=0, description="Completion length collapse.")
    max_length_ratio: float = Field(2.0, gt=0, description="Completion length blow-up.")
    max_no_answer_rise: float = Field(
        0.2, ge=0, le=1, description="Rise of the share of samples with no final answer."
    )
    max_canary_drop: float = Field(
        0.1, ge=0, le=1, description="Canary pass@1 this far below the best version's."
    )
    max_rollbacks: int = Field(
        3, ge=1, description="Consecutive rollbacks before the guard holds instead."
    )
