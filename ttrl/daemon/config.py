"""Configuration of the service loop (mounted at ``daemon:`` in the config tree)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DaemonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    votes: int = Field(16, ge=1, description="N: rollouts sampled and voted on per problem.")
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
