"""``ttrl serve``: the composition root. It wires the daemon's parts by role and runs the
main loop: claim, sample, vote, store; train on a schedule; hot-swap. Forever.

One thread samples and trains (they share the device); APScheduler threads renew leases,
reap expired ones, beat the heart, prune old rollout texts and raise the update timer.
The parts: :mod:`~ttrl.daemon.answering` (claim -> sample -> vote -> write),
:mod:`~ttrl.daemon.learner` (update policy and update), :mod:`~ttrl.daemon.guarding` (the
collapse guard's state), :mod:`~ttrl.daemon.outages`, :mod:`~ttrl.daemon.checkpoints`,
:mod:`~ttrl.daemon.jobs`, :mod:`~ttrl.daemon.versions` (following) and
:mod:`~ttrl.daemon.startup` (what is loaded before serving)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid

from loguru import logger
from sqlalchemy.exc import OperationalError

from ttrl.config import ConfigError, Settings
from ttrl.daemon import metrics, ranks, startup, workers
from ttrl.daemon.answering import Answerer, release_claims
from ttrl.daemon.breaker import EXIT_ENGINE_FAILURE, EngineFailure
from ttrl.daemon.checkpoints import Checkpoints, MissingCheckpoint
from ttrl.daemon.guarding import GuardKeeper
from ttrl.daemon.health import Progress, sd_notify, watchdog_interval
from ttrl.daemon.jobs import Jobs, reap, retention
from ttrl.daemon.learner import Learner
from ttrl.daemon.outages import Outages
from ttrl.daemon.serving import Serving
from ttrl.daemon.startup import LineageMismatch
from ttrl.daemon.versions import Follower, VersionWatch
from ttrl.db import make_engine, migrate, transaction
from ttrl.engines import EngineUnavailable
from ttrl.lm.files import ModelFilesError


class StartupError(ConfigError):
    """The service could not start for a reason a restart will not fix (exit 78)."""


# Errors whose message already says what to fix: raised as they are at start.
SAID_AT_START = (
    ConfigError,
    MissingCheckpoint,
    LineageMismatch,
    FileNotFoundError,
    ModelFilesError,
    EngineUnavailable,
)


class Service:
    """``ttrl serve``: construct with the effective settings, then :meth:`run`."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.role = cfg.daemon.role
        self.trains = cfg.daemon.updates and self.role != "rollout"
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.db = make_engine(cfg.db_url, cfg.database)
        self.progress = Progress()  # the loop's last step (feeds the watchdog)
        self.outages = Outages(self.db, cfg.daemon.outage_alert_s, self.progress)
        self.checkpoints = Checkpoints(cfg.daemon.checkpoint_dir, cfg.daemon.keep_checkpoints)
        self.jobs = Jobs()
        self.serving = Serving(None, 0)
        self.answerer: Answerer | None = None  # not on a learner
        self.learner: Learner | None = None  # where it trains
        self.follower: Follower | None = None  # rollout workers follow the learner
        self.halted: str | None = None  # why the circuit breaker stopped the worker
        self.guard_due = threading.Event()  # set by the guard.every_s timer

    @property
    def version(self) -> int:
        """The model version served."""
        return self.serving.version

    # -- life cycle ------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code (0, or
        :data:`EXIT_ENGINE_FAILURE` after the circuit breaker tripped)."""
        migrate.require_head(self.db)
        if self.trains:
            startup.rl_config(self.cfg)  # a config that cannot train fails before loading
        with transaction(self.db) as conn:
            workers.register_worker(
                conn, self.worker_id, socket.gethostname(), os.getpid(), self.role
            )
        try:
            self._start()
        except BaseException as exc:
            # No ghost: a start that failed leaves its worker row stopped, with the reason.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.jobs.stop()
            self.release("stopped", f"start failed: {reason}"[:1000])
            if self.answerer is not None:
                self.answerer.voter.shutdown(wait=False)
            self.db.dispose()
            unsaid = isinstance(exc, ValueError | OSError | ImportError | RuntimeError)
            if unsaid and not isinstance(exc, SAID_AT_START):
                # Whatever else stops the start (a device that is not there, files that
                # cannot be read, a model the engine cannot build): one line, exit 78, and
                # no restart loop printing a traceback every RestartSec.
                raise StartupError(f"cannot start: {type(exc).__name__}: {reason}") from exc
            raise
        try:
            while not self.stopping.is_set():
                try:
                    worked = self.step()
                    self.outages.back()
                except EngineFailure as exc:
                    self._halt(exc)
                    break
                except OperationalError as exc:
                    # The database went away between batches (claim, update read): nothing
                    # is in memory but the pending batch. Keep the process, retry with backoff.
                    if self.answerer is not None:
                        self.answerer.keep_pending_claims()
                    # The outage began when the failing call did (a hung one waited first).
                    self.stopping.wait(self.outages.down(exc, "claiming", self.progress.at))
                    continue
                sd_notify(status=self._status_line())
                if not worked:
                    self.stopping.wait(self.cfg.daemon.poll_s)
        finally:
            self._shutdown()
        return EXIT_ENGINE_FAILURE if self.halted else 0

    def _start(self) -> None:
        """Everything between registering and serving: signals, metrics, models, jobs."""
        self._install_signal_handlers()
        if self.cfg.daemon.metrics_port is not None:
            metrics.serve_metrics(self.cfg.daemon.metrics_port)
        self.load_models()
        metrics.MODEL_VERSION.set(self.version)
        metrics.ENGINE_BREAKER.set(0)
        self._start_jobs()
        self._beat("serving")
        sd_notify(ready=1, status=f"serving version {self.version}")
        logger.info("{} worker {} serving version {}", self.role, self.worker_id, self.version)

    def load_models(self) -> None:
        """Load the models (:func:`ttrl.daemon.startup.load_models`) and wire the parts
        this role runs around them."""
        cfg = self.cfg
        loaded = startup.load_models(self.db, cfg, self.checkpoints, self.trains)
        self.serving = Serving(loaded.engine, loaded.version)
        if self.role != "learner":
            assert loaded.engine is not None
            self.answerer = Answerer(
                cfg, self.db, self.worker_id, loaded.engine, self.outages, self.progress
            )
        if self.role == "rollout":
            watch = VersionWatch(self.db, cfg.daemon.version_poll_s, cfg.database)
            self.follower = Follower(self.db, watch, self.serving, loaded.base, self._beat)
        if self.trains:
            keeper = (
                GuardKeeper(cfg, self.db, self.serving, self.outages) if cfg.guard.enabled else None
            )
            self.learner = Learner(
                cfg,
                self.db,
                self.worker_id,
                self.serving,
                loaded.trainer,
                self.checkpoints,
                keeper,
                self.outages,
                self.progress,
                loaded.base,
                loaded.lineage_first,
            )

    def step(self) -> bool:
        """One round: a claimed batch voted and stored (not on a learner), then an update if
        one is due (not on a rollout worker, not once stopping). Returns False when there
        was nothing to do."""
        self.progress.touch()
        if self.follower is not None:
            self.follower.follow()
        claimed = self.answerer.claim_and_answer() if self.answerer is not None else False
        learner, updated = self.learner, False
        if learner is not None and not self.stopping.is_set():
            answerer = self.answerer
            pending = answerer.pending_groups() if answerer is not None else 0
            flush = answerer.flush if answerer is not None else (lambda: None)
            updated = learner.maybe_update(pending, flush, self.stopping)
        if learner is not None and self.guard_due.is_set() and not self.stopping.is_set():
            self.guard_due.clear()
            learner.scheduled_guard()
        return claimed or updated

    def _shutdown(self) -> None:
        sd_notify(stopping=1, status=f"halted: {self.halted}" if self.halted else "stopping")
        self.jobs.stop()
        if self.follower is not None:
            self.follower.watch.stop()
        if self.learner is not None and isinstance(self.learner.trainer, ranks.MirroredTrainer):
            self.learner.trainer.close()  # the other ranks of the learner leave too
        try:
            if self.answerer is not None:
                self.answerer.flush()  # sampled work is written (the grace timer bounds it)
        finally:
            if self.answerer is not None:
                self.answerer.voter.shutdown(wait=False)
            released = self.release(*(("halted", self.halted) if self.halted else ()))
            logger.info("stopped: {} ({} claims released)", self._status_line(), released)
            self.db.dispose()

    def release(self, worker_state: str = "stopped", reason: str | None = None) -> int:
        """Give the claims in flight back to the queue and record the worker's state."""
        claims = list(self.answerer.in_flight) if self.answerer is not None else []
        released = release_claims(self.db, self.worker_id, claims, worker_state, reason)
        if released is None:
            return 0  # the database is unreachable: their leases expire
        if self.answerer is not None:
            self.answerer.in_flight = []
        return released

    def _halt(self, exc: EngineFailure) -> None:
        """The breaker tripped: take back the attempts the streak counted, stop claiming,
        say why everywhere; :meth:`run` then releases the claims and exits 79."""
        assert self.answerer is not None
        refunded = self.answerer.refund_streak()
        self.halted = f"engine failure: {exc}"[:1000]
        metrics.ENGINE_BREAKER.set(1)
        logger.error(
            "circuit breaker: {}. The engine, not the problems, is failing: stopped claiming; "
            "{} claims go back to the queue unspent ({} attempts taken back); exiting {}. "
            "Check the model files and the device (docs/hardening.md), then start the "
            "service again",
            exc,
            len(self.answerer.in_flight),
            refunded,
            EXIT_ENGINE_FAILURE,
        )
        sd_notify(status=f"HALTED by the circuit breaker: {exc}"[:500])

    def _install_signal_handlers(self) -> None:
        first: list[float] = []

        def on_signal(signum: int, _frame: object) -> None:
            name = signal.Signals(signum).name
            if first and time.monotonic() - first[0] < 2.0:
                return  # the same stop twice (systemd and a launcher like torchrun)
            if self.stopping.is_set():
                logger.warning("second {}: releasing claims and exiting now", name)
                self.release()
                os._exit(0)
            logger.info("{} received: finishing the batch in flight", name)
            first.append(time.monotonic())
            self.stopping.set()
            threading.Thread(target=self._grace_timer, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _grace_timer(self) -> None:
        """After ``grace_s`` give the batch in flight back to the queue and leave."""
        grace_s = self.cfg.daemon.grace_s
        time.sleep(grace_s)
        logger.warning("grace period of {}s over: releasing claims and exiting", grace_s)
        try:
            self.release()
        finally:
            os._exit(0)

    # -- scheduled jobs --------------------------------------------------------------------

    def _start_jobs(self) -> None:
        d, db = self.cfg.daemon, self.db
        db_jobs = {
            "reap": (lambda: reap(db, self.cfg.queue.max_attempts), d.reap_every_s),
            "beat": (self._beat, d.heartbeat_s),
            "retention": (
                lambda: retention(db, d.retention_days, self.version - d.max_staleness),
                3600.0,
            ),
        }
        if self.answerer is not None:
            db_jobs["renew"] = (self.answerer.renew_leases, self.cfg.queue.lease_s / 3)
        timers = {}
        if self.learner is not None:
            timers["update"] = (self.learner.timer_due, d.update_every_s)
            self.learner.restart_timer = self.jobs.restart_update_timer
            # The guard runs where it trains.
            if self.learner.keeper is not None and self.cfg.guard.every_s:
                timers["guard"] = (self.guard_due, self.cfg.guard.every_s)
        ping = watchdog_interval()
        self.jobs.start(
            self.outages, db_jobs, timers, (self._feed_watchdog, ping) if ping else None
        )

    def _feed_watchdog(self) -> None:
        """WATCHDOG=1 only while the loop makes progress: a hung loop gets restarted."""
        stalled = self.progress.stalled_s()
        if stalled < self.cfg.daemon.stall_s:
            sd_notify(watchdog=1)
        else:
            logger.error("no progress for {:.0f}s: letting systemd's watchdog fire", stalled)

    def _beat(self, state: str | None = None) -> None:
        with transaction(self.db) as conn:
            workers.heartbeat(conn, self.worker_id, state, self.version)

    def _status_line(self) -> str:
        voted = metrics.REGISTRY.get_sample_value("ttrl_problems_voted_total") or 0
        updates = metrics.REGISTRY.get_sample_value("ttrl_updates_total") or 0
        return f"version {self.version}, voted {voted:.0f}, updates {updates:.0f}"
