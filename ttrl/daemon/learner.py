"""The learner: when to update, and the update itself.

An update trains on the untrained votes (every ``update_every_groups`` groups, or
``update_every_s`` after the last one if any group waits), then
train -> checkpoint -> swap -> probe -> guard -> record; a version the guard refuses is
recorded ``rolled_back`` and the best earlier one serves (and trains) again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import Connection
from sqlalchemy import Engine as SqlEngine

from ttrl.config import Settings
from ttrl.crashpoints import crash_point
from ttrl.daemon import guard, metrics, model_versions, votes
from ttrl.daemon.checkpoints import Checkpoints
from ttrl.daemon.guarding import GuardKeeper
from ttrl.daemon.health import Progress
from ttrl.daemon.model_versions import VersionColumns
from ttrl.daemon.outages import Outages
from ttrl.daemon.replay import SampleBuffer, replay_metrics
from ttrl.daemon.serving import Serving
from ttrl.daemon.startup import make_trainer
from ttrl.daemon.versions import announce
from ttrl.db import transaction
from ttrl.engines import released
from ttrl.rl.batch import Rollout, RolloutGroup

if TYPE_CHECKING:
    from ttrl.rl.metrics import StepMetrics  # torch: imported where the trainer is


def rollout_groups(stored: dict[int, list[votes.StoredRollout]]) -> list[RolloutGroup]:
    """The trainer's groups of the stored rollouts, by vote; an empty completion has
    nothing to train and a vote left without rollouts is no group."""
    groups = [
        RolloutGroup(
            vote_id,
            [
                Rollout(r.prompt_token_ids, r.token_ids, r.reward, r.model_version, r.logprobs)
                for r in rows
                if r.token_ids
            ],
            label_share=rows[0].label_share,
        )
        for vote_id, rows in stored.items()
    ]
    return [g for g in groups if g.rollouts]


class Learner:
    """Trains ``trainer`` on the votes in ``db`` and publishes the versions it makes."""

    def __init__(
        self,
        cfg: Settings,
        db: SqlEngine,
        worker_id: str,
        serving: Serving,
        trainer: Any,
        checkpoints: Checkpoints,
        keeper: GuardKeeper | None,
        outages: Outages,
        progress: Progress,
        base: Path,
        lineage_first: int,
    ) -> None:
        self.cfg = cfg
        self.daemon_cfg = cfg.daemon
        self.db = db
        self.worker_id = worker_id
        self.serving = serving
        self.trainer = trainer  # ttrl.rl.trainer.Trainer (or ranks.MirroredTrainer)
        self.checkpoints = checkpoints
        self.keeper = keeper
        self.outages = outages
        self.progress = progress
        self.base = base  # served after a rollback to version 0
        self.lineage_first = lineage_first
        self.timer_due = threading.Event()  # set by the update_every_s timer
        self.restart_timer: Callable[[], None] = lambda: None  # set once jobs run
        # Informative groups of past updates, lent to thin ones (daemon.replay).
        replay = cfg.daemon.replay
        self.replay = (
            SampleBuffer(replay, cfg.rl.min_label_share, cfg.rl.drop_uniform_groups)
            if replay.enabled
            else None
        )

    @property
    def held(self) -> bool:
        return self.keeper is not None and self.keeper.held

    def maybe_update(
        self, pending: int, flush: Callable[[], None], stopping: threading.Event
    ) -> bool:
        """Run an update when one is due; ``pending`` groups are sampled but not written
        (``flush`` writes them). Returns whether an update ran."""
        if self.held:
            return False
        min_version = self.serving.version - self.daemon_cfg.max_staleness
        waiting = self._count_waiting(min_version)
        if pending and self._due(waiting + pending):
            # An update trains on the batch just sampled, as if voting did not overlap.
            flush()
            waiting = self._count_waiting(min_version)
        if self._due(waiting) and not stopping.is_set():  # a stop during the flush
            self.update(min_version)
            return True
        return False

    def _due(self, waiting: int) -> bool:
        """Every B voted groups, or T seconds after the last update if any group waits."""
        return waiting > 0 and (
            waiting >= self.daemon_cfg.update_every_groups or self.timer_due.is_set()
        )

    def _count_waiting(self, min_version: int) -> int:
        with transaction(self.db, write=False) as conn:
            return votes.count_untrained_groups(conn, min_version, self.cfg.guard.canary_batches)

    def update(self, min_version: int) -> None:
        """One GRPO update on the untrained votes, then checkpoint, swap, guard and record."""
        self.timer_due.clear()
        self.restart_timer()
        with transaction(self.db, write=False) as conn:
            stored = votes.untrained_rollouts(
                conn,
                min_version,
                self.daemon_cfg.max_groups_per_update,
                self.cfg.guard.canary_batches,
            )
        groups = rollout_groups(stored)
        replayed = (
            self.replay.fill(
                groups,
                self.daemon_cfg.replay.fill_to or self.daemon_cfg.update_every_groups,
                min_version,
                self.daemon_cfg.max_groups_per_update,
            )
            if self.replay is not None
            else []
        )
        if self.keeper is not None:
            self.keeper.before_update()
        trainer, engine = self.trainer, self.serving.engine
        with (
            released(engine, lambda: (trainer.named_tensors(), trainer.version))
            if engine is not None
            else nullcontext()
        ):
            result: StepMetrics = trainer.step(groups + replayed)
        self.progress.touch()
        if result.skipped:
            metrics.UPDATES_SKIPPED.inc()
            version = self.serving.version
            self.outages.store(
                "consumed votes", lambda c: votes.mark_trained(c, list(stored), version)
            )
            logger.info("update skipped ({}); {} groups consumed", result.skip_reason, len(stored))
            return
        crash_point("trained")
        self._publish(result, list(stored), groups, replayed)

    def _publish(
        self,
        result: StepMetrics,
        stored: list[int],
        groups: list[RolloutGroup],
        replayed: list[RolloutGroup],
    ) -> None:
        """Checkpoint, swap, probe and record the version the trainer just made."""
        new_version, parent = self.trainer.version, self.serving.version
        path = self.checkpoints.fresh_path(new_version)
        self.trainer.save_checkpoint(path)  # atomic: files complete before the row below
        crash_point("checkpoint_renamed")
        t0 = time.perf_counter()
        if self.serving.engine is not None:
            self.serving.engine.update_weights(
                self.trainer.named_tensors(), new_version, share=self.trainer.shares_weights
            )
        swap_s = time.perf_counter() - t0
        # The guard probes the new version before it answers anything. Versions numbered a
        # multiple of every_updates: a restart neither skips nor delays one.
        keeper = self.keeper
        probe_now = keeper is not None and new_version % self.cfg.guard.every_updates == 0
        stats = keeper.probe_stats() if keeper is not None and probe_now else None
        decisions = keeper.check(stats, result.kl) if keeper is not None and stats else []
        action = guard.verdict(decisions)
        status = "rolled_back" if action == "rollback" else "active"
        n_groups = result.groups - result.groups_dropped - result.groups_low_share
        canary = stats.canary_pass1 if stats else None
        columns = VersionColumns(
            loss=result.loss,
            kl=result.kl,
            entropy=result.entropy,
            clip_frac=result.clip_frac,
            grad_norm=result.grad_norm,
            mean_reward=result.mean_reward,
            n_groups=n_groups,
            n_tokens=result.tokens,
            train_s=result.seconds,
            swap_s=swap_s,
            canary_pass1=canary,
        )
        details = {
            **result.as_dict(),
            "swap_s": swap_s,
            "n_groups": n_groups,
            "n_tokens": result.tokens,
            "train_s": result.seconds,
            "canary_pass1": canary,
            **replay_metrics(replayed, result.groups, new_version),
        }

        def publish(conn: Connection) -> None:
            model_versions.add_version(
                conn, new_version, parent, str(path), columns, details, status
            )
            votes.mark_trained(conn, stored, new_version)
            if decisions:
                model_versions.record_decisions(conn, new_version, self.worker_id, decisions)
            if status == "active":
                announce(conn, new_version)  # rollout workers load it (NOTIFY at commit)

        self.outages.store(f"model version {new_version}", publish)
        if self.replay is not None:
            self.replay.trained(groups, replayed, new_version)
        metrics.UPDATES.inc()
        metrics.TRAINED_TOKENS.inc(result.tokens)
        metrics.UPDATE_SECONDS.set(result.seconds)
        metrics.SWAP_SECONDS.set(swap_s)
        logger.info(
            "version {}: {} groups ({} replayed, {} dropped as uniform, {} below the label "
            "share), loss {:.4f}, reward {:.3f}, {:.1f}s train, {:.3f}s swap",
            new_version,
            result.groups,
            len(replayed),
            result.groups_dropped,
            result.groups_low_share,
            result.loss,
            result.mean_reward,
            result.seconds,
            swap_s,
        )
        if action == "rollback":
            self.roll_back(new_version)
            return
        self.serving.now(new_version)
        if keeper is not None:
            keeper.passed(stats)
            if action == "hold":
                keeper.hold(new_version)
        with transaction(self.db, write=False) as conn:
            best = model_versions.best_version(
                conn, below=new_version + 1, since=self.lineage_first
            )
        self.checkpoints.prune(new_version, best[1] if best else None)

    def roll_back(self, bad: int) -> None:
        """Serve (and train from) the best version before ``bad`` again."""
        engine = self.serving.engine
        assert engine is not None

        def restore(conn: Connection) -> tuple[int, str | None] | None:
            best = model_versions.best_version(conn, below=bad, since=self.lineage_first)
            model_versions.roll_back(conn, bad, best[0] if best else None)
            announce(conn, best[0] if best else 0)
            return best

        best = self.outages.store(f"the rollback of version {bad}", restore)
        to, path = best if best else (0, None)
        base = self.base
        model_dir = Path(path) if path else base
        try:
            engine.load_checkpoint(model_dir, to)
        except (OSError, ValueError) as exc:  # ModelFilesError is a ValueError
            logger.error("cannot load version {} ({}); serving the base model", to, exc)
            to, model_dir = 0, base
            engine.load_checkpoint(model_dir, to)
            self.outages.store(
                "the fallback to the base", lambda c: model_versions.roll_back(c, bad, None)
            )
        self.trainer = None  # free the bad weights before loading the good ones
        self.trainer = make_trainer(self.cfg, model_dir, bad)
        self.serving.now(to)
        if self.replay is not None:
            self.replay.forget_after(to)
        metrics.ROLLBACKS.inc()
        logger.warning("guard: version {} rolled back; serving version {} again", bad, to)
        if self.keeper is not None:
            self.keeper.rolled_back(to)

    def scheduled_guard(self) -> None:
        """The periodic check of the serving version (``guard.every_s``): its decisions are
        recorded; a rollback or hold follows as after an update."""
        assert self.keeper is not None
        action, decisions = self.keeper.scheduled()
        if not decisions:
            return
        serving = self.serving.version
        self.outages.store(
            "guard decisions",
            lambda c: model_versions.record_decisions(c, serving, self.worker_id, decisions),
        )
        if action == "rollback" and serving > 0:
            self.roll_back(serving)
        elif action in ("hold", "rollback"):
            self.keeper.hold(serving)
