"""The service loop: claim, sample, vote, store; train on a schedule; hot-swap. Forever.

One thread samples and trains (they share the device); APScheduler threads renew leases,
reap expired ones, beat the heart, prune old rollout texts and raise the update timer.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger
from sqlalchemy import Connection
from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ttrl import answers
from ttrl.config import ConfigError, Settings
from ttrl.crashpoints import crash_point
from ttrl.daemon import guard, passes, ranks, store
from ttrl.daemon import metrics as m
from ttrl.daemon.health import sd_notify, watchdog_interval
from ttrl.daemon.passes import PassVote
from ttrl.daemon.replay import SampleBuffer, replay_metrics
from ttrl.daemon.records import VoteRecord
from ttrl.daemon.versions import VersionWatch, announce
from ttrl.daemon.voting import Tally, tally, vote_record
from ttrl.db import make_engine, migrate, queue, transaction, utcnow
from ttrl.db.queue import ClaimedProblem, LeaseLost
from ttrl.engines import Engine, EngineUnavailable, load_engine, released
from ttrl.lm.files import ModelFilesError, check_model_dir, fingerprint
from ttrl.lm.paths import resolve_model_path
from ttrl.rl.batch import Rollout, RolloutGroup

T = TypeVar("T")


def rl_config(cfg: Settings) -> Any:
    """The trainer must score tokens as they were sampled: its temperature and the Dr. GRPO
    length constant follow ``engine.sampling``."""
    sampling = cfg.engine.sampling
    if sampling.temperature <= 0:
        raise ConfigError(
            "engine.sampling.temperature is 0 (greedy): all votes of a problem would agree "
            "and nothing could be learned; set it > 0 or daemon.updates: false"
        )
    follows = {
        "temperature": ("temperature", sampling.temperature),
        "max_completion_tokens": ("max_new_tokens", sampling.max_new_tokens),
    }
    for key, (engine_key, value) in follows.items():
        mine = getattr(cfg.rl, key)
        if key in cfg.rl.model_fields_set and mine != value:
            raise ConfigError(
                f"rl.{key}={mine} differs from engine.sampling.{engine_key}={value}: the "
                f"trainer follows the engine's sampling; drop rl.{key} or set both alike"
            )
    return cfg.rl.model_copy(update={key: value for key, (_, value) in follows.items()})


def build_trainer(cfg: Settings, model_dir: Path, version: int) -> Any:
    """A :class:`ttrl.rl.trainer.Trainer` at ``model_dir`` whose KL reference is the base
    model (imported here: it pulls in torch)."""
    from ttrl.rl.trainer import Trainer

    return Trainer(
        rl_config(cfg),
        model_dir,
        version=version,
        trust_remote_code=cfg.engine.trust_remote_code,
        reference_dir=resolve_model_path(cfg.engine.model),
    )


class MissingCheckpoint(RuntimeError):
    """The active model version's files are gone; the message says what to do."""


class LineageMismatch(RuntimeError):
    """``engine.model`` is not the base model the database's versions descend from."""


class StartupError(ConfigError):
    """The service could not start for a reason a restart will not fix (exit 78)."""


class EngineFailure(RuntimeError):
    """The engine failed systemically (the circuit breaker tripped); the message says how."""


# `ttrl serve` exits with this when the circuit breaker tripped: the engine failed every
# generation the same way. systemd does not restart it (RestartPreventExitStatus).
EXIT_ENGINE_FAILURE = 79


# The circuit breaker's control: a prompt any working engine samples.
PLAIN_PROMPT = "What is 1 + 1?"


def _signature(exc: BaseException) -> str:
    """What makes two engine errors "the same": type and first line of the message."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


class _NoSkippedRuns(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


class Service:
    """``ttrl serve``: construct with the effective settings, then :meth:`run`."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg = cfg
        self.daemon_cfg = cfg.daemon
        self.role = cfg.daemon.role
        self.trains = cfg.daemon.updates and self.role != "rollout"
        self.watch: VersionWatch | None = None  # rollout workers follow the learner
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.update_due = threading.Event()
        self.in_flight: list[int] = []  # claimed, not yet written: up to two batches
        # The batch sampled last, its tally running on `voter` while the next batch samples.
        self.pending: tuple[list[tuple[ClaimedProblem, list]], Future[list[Tally]]] | None = None
        self.voter = ThreadPoolExecutor(1, thread_name_prefix="voting")
        self.db: SqlEngine = make_engine(cfg.db_url, cfg.database)
        self.engine: Engine | None = None
        self.trainer: Any = None  # ttrl.rl.trainer.Trainer, imported lazily (torch)
        self.version = 0
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.outage_since: float | None = None  # monotonic time the database went away
        self.progress_at = time.monotonic()  # the loop's last step (feeds the watchdog)
        # The collapse guard: its fixed probe, the baseline stats, the best canary pass@1.
        self.guard_cfg = cfg.guard
        self.guard_due = threading.Event()
        self.probe: list[tuple[str, str | None]] = []
        self.baseline: guard.ProbeStats | None = None
        self.best_canary: float | None = None
        self.rollbacks = 0  # consecutive
        self.held = False  # the guard stopped updates
        # The circuit breaker: problems failed in a row with the same engine error.
        self.streak: list[int] = []
        self.streak_signature: str | None = None
        self.halted: str | None = None  # why the breaker stopped the worker
        self.lineage_first = 1  # versions below belong to an older base model
        # Informative groups of past updates, lent to thin ones (daemon.replay).
        self.replay = (
            SampleBuffer(cfg.daemon.replay, cfg.rl.min_label_share, cfg.rl.drop_uniform_groups)
            if cfg.daemon.replay.enabled
            else None
        )

    # -- life cycle ------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code (0, or
        :data:`EXIT_ENGINE_FAILURE` after the circuit breaker tripped)."""
        migrate.require_head(self.db)
        if self.trains:
            rl_config(self.cfg)  # a config that cannot train fails before the model loads
        with transaction(self.db) as conn:
            store.register_worker(
                conn, self.worker_id, socket.gethostname(), os.getpid(), self.role
            )
        try:
            self._start()
        except BaseException as exc:
            # No ghost: a start that failed leaves its worker row stopped, with the reason.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            self._release_in_flight("stopped", f"start failed: {reason}"[:1000])
            self.voter.shutdown(wait=False)
            self.db.dispose()
            said = (ConfigError, MissingCheckpoint, LineageMismatch, FileNotFoundError)
            said += (ModelFilesError, EngineUnavailable)  # each says what to fix
            unsaid = isinstance(exc, ValueError | OSError | ImportError | RuntimeError)
            if unsaid and not isinstance(exc, said):
                # Whatever else stops the start (a device that is not there, files that
                # cannot be read, a model the engine cannot build): one line, exit 78, and
                # no restart loop printing a traceback every RestartSec.
                raise StartupError(f"cannot start: {type(exc).__name__}: {reason}") from exc
            raise
        try:
            while not self.stopping.is_set():
                try:
                    worked = self.step()
                    self._database_back()
                except EngineFailure as exc:
                    self._halt(exc)
                    break
                except OperationalError as exc:
                    # The database went away between batches (claim, update read): nothing
                    # is in memory but the pending batch; the other claims are not renewed
                    # (their leases expire). Keep the process and retry with backoff.
                    keep = {c.id for c, _ in self.pending[0]} if self.pending else set()
                    self.in_flight = [i for i in self.in_flight if i in keep]
                    # The outage began when the failing call did (a hung one waited first).
                    self.stopping.wait(self._database_down(exc, "claiming", self.progress_at))
                    continue
                sd_notify(status=self._status_line())
                if not worked:
                    self.stopping.wait(self.daemon_cfg.poll_s)
        finally:
            self._shutdown()
        return EXIT_ENGINE_FAILURE if self.halted else 0

    def _start(self) -> None:
        """Everything between registering and serving: signals, metrics, models, jobs."""
        self._install_signal_handlers()
        if self.daemon_cfg.metrics_port is not None:
            m.serve_metrics(self.daemon_cfg.metrics_port)
        self._load_models()
        m.MODEL_VERSION.set(self.version)
        m.ENGINE_BREAKER.set(0)
        if self.role == "rollout":
            self.watch = VersionWatch(self.db, self.daemon_cfg.version_poll_s, self.cfg.database)
        self._start_jobs()
        self._beat("serving")
        sd_notify(ready=1, status=f"serving version {self.version}")
        logger.info("{} worker {} serving version {}", self.role, self.worker_id, self.version)

    def step(self) -> bool:
        """One round: a claimed batch voted and stored (not on a learner), then an update if
        one is due (not on a rollout worker, not once stopping). Returns False when there
        was nothing to do."""
        self.progress_at = time.monotonic()
        if self.watch is not None and self.watch.due():
            self._follow_versions()
        claimed = []
        if self.role != "learner":
            with transaction(self.db) as conn:
                claimed = queue.claim(
                    conn, self.cfg.queue.claim_batch, self.worker_id, self.cfg.queue.lease_s
                )
        if claimed:
            self.in_flight += [c.id for c in claimed]
            self._answer(claimed)
        else:
            self._flush()  # nothing to overlap with: write the last batch now
        updated = False
        if not self.stopping.is_set():
            updated = self._maybe_update()
        if self.guard_due.is_set() and not self.stopping.is_set():
            self._scheduled_guard()
        return bool(claimed) or updated

    def _shutdown(self) -> None:
        sd_notify(stopping=1, status=f"halted: {self.halted}" if self.halted else "stopping")
        self.scheduler.shutdown(wait=False)
        if self.watch is not None:
            self.watch.stop()
        if isinstance(self.trainer, ranks.MirroredTrainer):
            self.trainer.close()  # the other ranks of the learner leave too
        try:
            self._flush()  # sampled work is written, not dropped (the grace timer bounds it)
        finally:
            self.voter.shutdown(wait=False)
            if self.halted:
                released = self._release_in_flight("halted", self.halted)
            else:
                released = self._release_in_flight()
            logger.info("stopped: {} ({} claims released)", self._status_line(), released)
            self.db.dispose()

    def _release_in_flight(self, worker_state: str = "stopped", reason: str | None = None) -> int:
        """Give unfinished claims back to the queue and record the worker's state."""
        try:
            with transaction(self.db) as conn:
                released = queue.release(conn, list(self.in_flight), self.worker_id)
                store.heartbeat(conn, self.worker_id, state=worker_state, reason=reason)
        except SQLAlchemyError as exc:
            logger.error(
                "could not release claims {} ({}); their leases will expire", self.in_flight, exc
            )
            return 0
        self.in_flight = []
        m.CLAIMS_RELEASED.inc(released)
        return released

    def _install_signal_handlers(self) -> None:
        first: list[float] = []

        def on_signal(signum: int, _frame: object) -> None:
            name = signal.Signals(signum).name
            if first and time.monotonic() - first[0] < 2.0:
                return  # the same stop twice (systemd and a launcher like torchrun)
            if self.stopping.is_set():
                logger.warning("second {}: releasing claims and exiting now", name)
                self._release_in_flight()
                os._exit(0)
            logger.info("{} received: finishing the batch in flight", name)
            first.append(time.monotonic())
            self.stopping.set()
            threading.Thread(target=self._grace_timer, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _grace_timer(self) -> None:
        """After ``grace_s`` give the batch in flight back to the queue and leave."""
        time.sleep(self.daemon_cfg.grace_s)
        logger.warning(
            "grace period of {}s over: releasing claims and exiting", self.daemon_cfg.grace_s
        )
        try:
            self._release_in_flight()
        finally:
            os._exit(0)

    # -- models ----------------------------------------------------------------------------

    def _load_models(self) -> None:
        """Resume from the newest active version whose files are complete, else the base."""
        answers.configure(self.cfg.answers)
        # The sympy workers start while the model loads (thread-safe: callers wait for them).
        threading.Thread(target=answers.warm_up, name="answers-warm-up", daemon=True).start()
        if self.trains:  # only the writer: a rollout worker would delete a write in progress
            for partial in Path(self.daemon_cfg.checkpoint_dir).glob(".v*.tmp-*"):
                logger.warning("removing {}: a checkpoint a crash left unfinished", partial)
                shutil.rmtree(partial, ignore_errors=True)
        base = resolve_model_path(self.cfg.engine.model)
        # The configured files are always checked, also when a checkpoint is resumed: they
        # are the lineage's identity, the KL reference and the guard's baseline.
        check_model_dir(base)
        self._check_lineage(base)
        self._verify_weights(base)
        with transaction(self.db, write=False) as conn:
            newest = store.newest_active_version(conn)
            numbered = store.newest_version_number(conn)
        model_dir = base
        if newest:
            if not (newest[1] and (Path(newest[1]) / "config.json").is_file()):
                # Serving the base model under later version numbers would mislabel every
                # vote; the operator must restore the files or retire the version.
                raise MissingCheckpoint(
                    f"model version {newest[0]} is active but its checkpoint {newest[1]} is "
                    "missing or incomplete: restore that directory, or set that version's "
                    "status to 'retired' in model_versions to resume from the one before"
                )
            self.version, model_dir = newest[0], Path(newest[1])
            self._verify_weights(model_dir)
        # A learner samples only the guard's probe.
        if self.role != "learner" or self.guard_cfg.enabled:
            self.engine = load_engine(
                self.cfg.engine.model_copy(update={"model": str(model_dir)}), self.version
            )
        if self.trains:
            # New versions are numbered after every recorded one: after a rollback the
            # active version is not the newest number (the rolled-back one and any retired
            # in between are), as in :meth:`_roll_back`.
            self.trainer = self._make_trainer(model_dir, numbered)
            if self.engine is not None and self.trainer.shares_weights:
                # One set of weights in memory: the engine serves the trainer's (the same).
                self.engine.update_weights(self.trainer.named_tensors(), self.version, share=True)
        logger.info("model {} at version {}", model_dir, self.version)

    def _verify_weights(self, model_dir: Path) -> None:
        """Every weight finite before the files serve (``daemon.verify_weights``): a model
        poisoned with NaN would fail every sample; ModelFilesError names the tensor."""
        if self.daemon_cfg.verify_weights:
            from ttrl.engines.weights import check_finite_files

            t0 = time.perf_counter()
            n = check_finite_files(model_dir)
            logger.info("{}: {} tensors finite ({:.1f}s)", model_dir, n, time.perf_counter() - t0)

    def _check_lineage(self, base: Path) -> None:
        """The database's versions descend from one base model (its files' fingerprint,
        recorded by the first daemon); another ``engine.model`` is refused, or starts a
        new lineage with ``daemon.new_lineage``."""
        model = self.cfg.engine.model
        mark = fingerprint(base)
        with transaction(self.db) as conn:
            known = store.current_lineage(conn)
            if known is None:
                store.start_lineage(conn, model, str(base), mark)
                logger.info("lineage: model versions descend from {} ({})", model, base)
                return
            if known.fingerprint == mark:
                self.lineage_first = known.first_version
                if self.daemon_cfg.new_lineage:
                    logger.warning("daemon.new_lineage is set but engine.model is unchanged")
                return
            if not self.daemon_cfg.new_lineage or self.role == "rollout":
                raise LineageMismatch(
                    f"engine.model {model} ({base}, fingerprint {mark[:12]}) is not the base "
                    f"model this database's versions descend from: {known.model} "
                    f"({known.path}, fingerprint {known.fingerprint[:12]}, recorded "
                    f"{known.created_at:%Y-%m-%d %H:%M} UTC). Set engine.model back to "
                    f"{known.model}; or start a new lineage from {model} on this database "
                    "with daemon.new_lineage: true (TTRL_DAEMON__NEW_LINEAGE=true) for one "
                    "start of the learner (or the single daemon): the old versions are "
                    "retired, its votes and answers stay; or use a new database"
                    + ("; a rollout worker never starts one" if self.role == "rollout" else "")
                )
            self.lineage_first = store.start_lineage(conn, model, str(base), mark, retire=True)
        logger.warning(
            "lineage: new base model {} ({}); versions from {} on descend from it, the old "
            "lineage ({}) is retired",
            model,
            base,
            self.lineage_first,
            known.model,
        )

    def _make_trainer(self, model_dir: Path, version: int) -> Any:
        """The trainer; under a multi-rank launcher (DeepSpeed) one the other ranks mirror."""
        rank, world = ranks.world()
        if world == 1:
            return build_trainer(self.cfg, model_dir, version)
        assert rank == 0, "ranks > 0 run ranks.follow, not the service"
        import torch

        ranks.init_process_group(torch.cuda.is_available())
        return ranks.MirroredTrainer(lambda d, v: build_trainer(self.cfg, d, v), model_dir, version)

    def _follow_versions(self) -> None:
        """Rollout workers: serve the learner's active version (newer, or older after a
        rollback). Files not readable yet (a lagging shared filesystem) are retried later."""
        assert self.engine is not None
        with transaction(self.db, write=False) as conn:
            newest = store.newest_active_version(conn)
        version, path = newest if newest else (0, None)
        if version == self.version:
            return
        model_dir = Path(path) if path else resolve_model_path(self.cfg.engine.model)
        try:
            # load_checkpoint checks every tensor (names, shapes, NaN/inf) before serving it.
            self.engine.load_checkpoint(model_dir, version)
        except (OSError, ValueError, RuntimeError) as exc:
            logger.warning("cannot load version {} from {} yet ({}); retrying", version, path, exc)
            return
        self.version = version
        m.MODEL_VERSION.set(version)
        self._beat()

    # -- answering -------------------------------------------------------------------------

    def _generate(self, claimed: list[ClaimedProblem]) -> list[tuple[ClaimedProblem, list]]:
        """Sample every claimed problem. When the batch fails, each problem is retried alone
        and the one that fails by itself is failed in the queue (with the reason), so one bad
        prompt never takes the others down.

        The circuit breaker: when every problem of a batch of two or more fails alone with
        the same engine error, or ``daemon.breaker_failures`` problems in a row do, the
        engine is what is broken. :class:`EngineFailure` is raised with nothing recorded
        against the batch (and the attempts the streak counted are taken back, see
        :meth:`_halt`)."""
        assert self.engine is not None
        try:
            out = self._sample([c.prompt for c in claimed])
            self._engine_worked()
            return list(zip(claimed, out, strict=True))
        except (ValueError, RuntimeError) as exc:
            if len(claimed) == 1:
                self._generation_failed(claimed[0], exc)
                return []
        sampled, failed = [], []
        for c in claimed:
            try:
                sampled.append((c, self._sample([c.prompt])[0]))
                self._engine_worked()
            except (ValueError, RuntimeError) as exc:
                failed.append((c, exc))
        signatures = {_signature(exc) for _, exc in failed}
        if not sampled and len(signatures) == 1 and self._engine_broken():
            raise EngineFailure(
                f"all {len(claimed)} problems of a batch failed alone with the same engine "
                f"error, and so did a plain prompt: {signatures.pop()}"
            )
        for c, exc in failed:
            self._generation_failed(c, exc)
        return sampled

    def _sample(self, prompts: list[str], n: int | None = None, max_new_tokens: int = 0) -> list:
        """``n`` (default ``daemon.votes``) samples of each prompt with the configured
        sampling, the engine's logprobs included when the trainer corrects for the engine
        (they are its behaviour policy); ``max_new_tokens`` caps the length when set."""
        assert self.engine is not None
        sampling = replace(self.cfg.engine.sampling, logprobs=self.cfg.rl.is_correction)
        if max_new_tokens:
            sampling = replace(sampling, max_new_tokens=max_new_tokens)
        try:
            return self.engine.generate(prompts, n or self.daemon_cfg.votes, sampling)
        except (ValueError, RuntimeError):
            m.GENERATION_FAILURES.inc()
            raise

    def _engine_worked(self) -> None:
        self.streak, self.streak_signature = [], None

    def _generation_failed(self, problem: ClaimedProblem, exc: BaseException) -> None:
        """One problem failed alone: fail it, unless it makes ``breaker_failures`` in a row
        with the same engine error and a plain prompt fails too (then the breaker trips and
        this one is not recorded)."""
        signature = _signature(exc)
        if signature != self.streak_signature:
            self.streak, self.streak_signature = [], signature
        if len(self.streak) + 1 < self.daemon_cfg.breaker_failures:
            self.streak.append(problem.id)
        elif self._engine_broken():
            raise EngineFailure(
                f"{len(self.streak) + 1} problems in a row failed with the same engine error, "
                f"and so did a plain prompt: {signature}"
            )
        else:
            self._engine_worked()  # the engine samples: these prompts are what fails
        self._fail(problem.id, f"generation failed: {exc}")

    def _engine_broken(self) -> bool:
        """The breaker's control: whether the engine fails a plain prompt too. Failures
        alike may be the prompts' own (a batch of duplicates, all too long), of any error
        type; failing :data:`PLAIN_PROMPT` as well, the engine is what is broken."""
        assert self.engine is not None
        sampling = self.cfg.engine.sampling
        try:
            self._sample([PLAIN_PROMPT], 1, min(8, sampling.max_new_tokens))
        except (ValueError, RuntimeError) as exc:
            logger.error("circuit breaker: the plain prompt {!r} fails too: {}", PLAIN_PROMPT, exc)
            return True
        logger.warning("circuit breaker: the engine samples a plain prompt; failing the problems")
        return False

    def _halt(self, exc: EngineFailure) -> None:
        """The breaker tripped: take back the attempts the streak counted, stop claiming,
        say why everywhere; :meth:`run` then releases the claims and exits 79."""
        refunded = self.streak
        if refunded:
            self._store("the refund of attempts", lambda conn: queue.refund(conn, refunded))
        self.streak = []
        self.halted = f"engine failure: {exc}"[:1000]
        m.ENGINE_BREAKER.set(1)
        logger.error(
            "circuit breaker: {}. The engine, not the problems, is failing: stopped claiming; "
            "{} claims go back to the queue unspent ({} attempts taken back); exiting {}. "
            "Check the model files and the device (docs/hardening.md), then start the "
            "service again",
            exc,
            len(self.in_flight),
            len(refunded),
            EXIT_ENGINE_FAILURE,
        )
        sd_notify(status=f"HALTED by the circuit breaker: {exc}"[:500])

    def _fail(self, problem_id: int, reason: str) -> None:
        """Record a failed attempt (requeued, or failed for good after ``max_attempts``),
        through database outages. A lease lost meanwhile leaves the problem to its new owner."""
        logger.error("problem {}: {}", problem_id, reason)
        max_attempts = self.cfg.queue.max_attempts
        try:
            status = self._store(
                f"the failure of problem {problem_id}",
                lambda conn: queue.fail(conn, problem_id, self.worker_id, reason, max_attempts),
            )
            m.PROBLEM_FAILURES.labels("failed" if status == "failed" else "requeued").inc()
        except LeaseLost as exc:
            logger.warning("problem {}: failure not recorded: {}", problem_id, exc)
        self.in_flight.remove(problem_id)

    def _answer(self, claimed: list[ClaimedProblem]) -> None:
        """Sample the batch, write the previous one (its tally ran while this one sampled),
        and start this one's tally."""
        sampled = self._generate(claimed)
        self.progress_at = time.monotonic()
        crash_point("sampled")
        self._flush()
        counting = self.voter.submit(lambda: [tally(samples) for _, samples in sampled])
        self.pending = (sampled, counting)

    def _flush(self) -> None:
        """Write the pending batch's votes in one transaction. The samples stay in memory
        through a database outage and are written when it ends."""
        if self.pending is None:
            return
        sampled, counting = self.pending
        self.pending = None  # a tally that failed is not retried forever
        tallies = counting.result()
        records = self._store(
            "the votes of the batch", lambda conn: self._write_votes(conn, sampled, tallies)
        )
        written = {c.id for c, _ in sampled}
        self.in_flight = [i for i in self.in_flight if i not in written]
        for record, settled in records:
            m.PROBLEMS_VOTED.inc()
            m.PROBLEMS_SETTLED.inc(settled)
            m.ROLLOUTS.inc(len(record.rollouts))
            m.VOTE_SHARE.set(record.share)

    def _write_votes(
        self,
        conn: Connection,
        sampled: list[tuple[ClaimedProblem, list]],
        tallies: list[Tally],
    ) -> list[tuple[VoteRecord, bool]]:
        """One commit for the batch; a savepoint per problem, so a problem whose lease was
        lost (another worker owns the pass now, its vote stands) drops alone. Returns the
        votes written, each with whether the pass policy settled its problem."""
        records = []
        ids = [c.id for c, _ in sampled]
        references = store.reference_answers(conn, ids)
        policy = self.daemon_cfg.passes
        adaptive = policy.policy == "adaptive"
        history = store.recent_votes(conn, ids, policy.settle_after - 1) if adaptive else {}
        for (problem, samples), counted in zip(sampled, tallies, strict=True):
            record = vote_record(
                problem.id, problem.passes_done, samples, references.get(problem.id), counted
            )
            recent = [*history.get(problem.id, []), PassVote(record.label_key, record.share)]
            # Canaries keep their passes: per-version canary accuracy needs their votes.
            fixed = problem.fixed_passes or problem.batch in self.guard_cfg.canary_batches
            decision = passes.decide(
                recent, problem.passes_done + 1, problem.passes_wanted, fixed, policy
            )
            try:
                with conn.begin_nested():
                    store.record_vote(conn, record, self.worker_id)
                    queue.complete_pass(
                        conn,
                        problem.id,
                        self.worker_id,
                        record.label,
                        record.share,
                        record.model_version,
                        settle=decision.settle,
                        passes_wanted=decision.passes_wanted,
                    )
            except (LeaseLost, IntegrityError) as exc:
                logger.warning("problem {}: vote dropped: {}", problem.id, exc)
                continue
            records.append((record, decision.settle))
        crash_point("vote_written")
        return records

    # -- database outages ------------------------------------------------------------------

    def _store(self, what: str, write: Callable[[Connection], T]) -> T:
        """Run ``write`` in one transaction, retrying through database outages with backoff
        for as long as it takes: the work in memory is written when the database returns.
        (Claims whose lease ran out meanwhile and were taken over drop alone, see
        :meth:`_write_votes`.)"""
        while True:
            began = time.monotonic()
            try:
                with transaction(self.db) as conn:
                    result = write(conn)
                self._database_back()
                return result
            except OperationalError as exc:
                wait = self._database_down(exc, f"writing {what}", began)
            # Stopping does not drop the work: the grace timer bounds the wait.
            time.sleep(wait)

    def _database_down(
        self, exc: OperationalError, doing: str, began: float | None = None
    ) -> float:
        """Log the outage (an error once it is older than ``daemon.outage_alert_s``), keep the
        watchdog fed (the process is alive and retrying), return the backoff in seconds. The
        outage counts from ``began``, when the failing call started: a connection that hung
        until it was cut or timed out was down all that time, like a refused one."""
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = min(now, began) if began is not None else now
        down = now - self.outage_since
        wait = min(30.0, 1.0 + down / 2)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if down >= self.daemon_cfg.outage_alert_s:
            status = f"DATABASE UNREACHABLE for {down / 60:.1f} min ({reason}); retrying"
            logger.error("{} while {}", status, doing)
        else:
            status = f"database unavailable for {down:.0f}s ({reason}); retrying"
            logger.warning("{} while {}; next try in {:.0f}s", status, doing, wait)
        m.DB_OUTAGE_SECONDS.set(down)
        m.DB_ERRORS.inc()
        self.progress_at = now  # alive and retrying: not a stall
        sd_notify(status=status)
        return wait

    def _database_back(self) -> None:
        if self.outage_since is not None:
            down = time.monotonic() - self.outage_since
            logger.info("database back after {:.0f}s", down)
            m.DB_OUTAGE_SECONDS.set(0)
            self.outage_since = None

    # -- training --------------------------------------------------------------------------

    def _maybe_update(self) -> bool:
        """Run an update when one is due; returns whether it ran."""
        if self.trainer is None or self.held:
            return False
        min_version = self.version - self.daemon_cfg.max_staleness
        waiting = self._count_waiting(min_version)
        if self.pending and self._update_due(waiting + len(self.pending[0])):
            # An update trains on the batch just sampled, as if voting did not overlap.
            self._flush()
            waiting = self._count_waiting(min_version)
        if self._update_due(waiting) and not self.stopping.is_set():  # a stop during the flush
            self.update(min_version)
            return True
        return False

    def _update_due(self, waiting: int) -> bool:
        """Every B voted groups, or T seconds after the last update if any group waits."""
        return waiting > 0 and (
            waiting >= self.daemon_cfg.update_every_groups or self.update_due.is_set()
        )

    def _count_waiting(self, min_version: int) -> int:
        with transaction(self.db, write=False) as conn:
            return store.count_untrained_groups(conn, min_version, self.guard_cfg.canary_batches)

    def update(self, min_version: int) -> None:
        """One GRPO update on the untrained votes, then checkpoint, swap, guard and record."""
        assert self.trainer is not None
        self.update_due.clear()
        self._reschedule_update_timer()
        with transaction(self.db, write=False) as conn:
            stored = store.untrained_rollouts(
                conn,
                min_version,
                self.daemon_cfg.max_groups_per_update,
                self.guard_cfg.canary_batches,
            )
        groups = [
            RolloutGroup(
                vote_id,
                [
                    Rollout(r.prompt_token_ids, r.token_ids, r.reward, r.model_version, r.logprobs)
                    for r in rows
                    if r.token_ids  # an empty completion has nothing to train
                ],
                label_share=rows[0].label_share,
            )
            for vote_id, rows in stored.items()
        ]
        groups = [g for g in groups if g.rollouts]
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
        if self.guard_cfg.enabled:
            self._refresh_canaries()
        if self.guard_cfg.enabled and self.baseline is None:
            self.baseline = self._base_probe_stats()
            self.best_canary = self.baseline.canary_pass1 if self.baseline else None
        trainer = self.trainer
        with (
            released(self.engine, lambda: (trainer.named_tensors(), trainer.version))
            if self.engine is not None
            else nullcontext()
        ):
            metrics = trainer.step(groups + replayed)
        self.progress_at = time.monotonic()
        if metrics.skipped:
            m.UPDATES_SKIPPED.inc()
            self._store(
                "consumed votes", lambda c: store.mark_trained(c, list(stored), self.version)
            )
            logger.info("update skipped ({}); {} groups consumed", metrics.skip_reason, len(stored))
            return

        crash_point("trained")
        new_version, parent = self.trainer.version, self.version
        path = self._checkpoint_path(new_version)
        if path.exists():  # left by a crash between the files and the row: never published
            logger.warning("removing unrecorded checkpoint {}", path)
            shutil.rmtree(path)
        self.trainer.save_checkpoint(path)  # atomic: files complete before the row below
        crash_point("checkpoint_renamed")
        t0 = time.perf_counter()
        if self.engine is not None:
            self.engine.update_weights(
                self.trainer.named_tensors(), new_version, share=self.trainer.shares_weights
            )
        swap_s = time.perf_counter() - t0
        # The guard probes the new version before it answers anything.
        # Versions numbered a multiple of every_updates: a restart neither skips nor delays one.
        probe_now = self.guard_cfg.enabled and new_version % self.guard_cfg.every_updates == 0
        stats = self._probe_stats() if probe_now else None
        decisions = self._check(stats, metrics.kl) if stats else []
        action = guard.verdict(decisions)
        status = "rolled_back" if action == "rollback" else "active"
        record = {
            **metrics.as_dict(),
            "swap_s": swap_s,
            "n_groups": metrics.groups - metrics.groups_dropped - metrics.groups_low_share,
            "n_tokens": metrics.tokens,
            "train_s": metrics.seconds,
            "canary_pass1": stats.canary_pass1 if stats else None,
            **replay_metrics(replayed, metrics.groups, new_version),
        }

        def publish(conn: Connection) -> None:
            store.add_version(conn, new_version, parent, str(path), record, status)
            store.mark_trained(conn, list(stored), new_version)
            if decisions:
                store.record_decisions(conn, new_version, self.worker_id, decisions)
            if status == "active":
                announce(conn, new_version)  # rollout workers load it (NOTIFY at commit)

        self._store(f"model version {new_version}", publish)
        if self.replay is not None:
            self.replay.trained(groups, replayed, new_version)
        m.UPDATES.inc()
        m.TRAINED_TOKENS.inc(metrics.tokens)
        m.UPDATE_SECONDS.set(metrics.seconds)
        m.SWAP_SECONDS.set(swap_s)
        logger.info(
            "version {}: {} groups ({} replayed, {} dropped as uniform, {} below the label "
            "share), loss {:.4f}, reward {:.3f}, {:.1f}s train, {:.3f}s swap",
            new_version,
            metrics.groups,
            len(replayed),
            metrics.groups_dropped,
            metrics.groups_low_share,
            metrics.loss,
            metrics.mean_reward,
            metrics.seconds,
            swap_s,
        )
        if action == "rollback":
            self._roll_back(new_version)
            return
        self.version = new_version
        m.MODEL_VERSION.set(new_version)
        if stats is not None and stats.canary_pass1 is not None:
            self.best_canary = max(self.best_canary or 0.0, stats.canary_pass1)
        if stats is not None:  # "in a row" counts probed versions: unchecked ones pass nothing
            self.rollbacks = 0
        if action == "hold":
            self._hold(new_version)
        self._prune_checkpoints()

    # -- collapse guard --------------------------------------------------------------------

    def _probe_stats(self) -> guard.ProbeStats | None:
        """Sample the guard's probe with the serving weights; None when there is nothing to
        probe yet or sampling failed (the check is then skipped, and logged)."""
        assert self.engine is not None
        if not self._probe_chosen():
            return None
        sampling = replace(self.cfg.engine.sampling, seed=self.guard_cfg.seed, logprobs=True)
        try:
            groups = self.engine.generate(
                [p for p, _ in self.probe], self.guard_cfg.probe_samples, sampling
            )
        except (ValueError, RuntimeError) as exc:
            logger.error("guard probe failed ({}); this version is not checked", exc)
            return None
        return guard.probe_stats(groups, [ref for _, ref in self.probe])

    def _probe_chosen(self) -> bool:
        """Choose the probe once (canaries, then the newest problems); False while there
        is nothing to probe."""
        if not self.probe:
            with transaction(self.db, write=False) as conn:
                self.probe = store.probe_prompts(
                    conn,
                    self.guard_cfg.canary_batches,
                    self.guard_cfg.max_canaries,
                    self.guard_cfg.probe_prompts,
                )
        return bool(self.probe)

    def _refresh_canaries(self) -> None:
        """Canaries enqueued since the probe was chosen join it at the next update. The
        probe changed, so the baseline (and the best canary pass@1) is measured again on
        the base model before this update's version is compared with it."""
        if not self.probe:
            return  # chosen (canaries included) at the first probe
        with transaction(self.db, write=False) as conn:
            canaries = store.probe_prompts(
                conn, self.guard_cfg.canary_batches, self.guard_cfg.max_canaries, 0
            )
        known = [p for p in self.probe if p[1] is not None]
        if canaries == known:
            return
        logger.info(
            "guard: the probe now holds {} canaries ({} before); measuring the baseline again",
            len(canaries),
            len(known),
        )
        self.probe = canaries + [p for p in self.probe if p[1] is None]
        self.baseline = None

    def _base_probe_stats(self) -> guard.ProbeStats | None:
        """The guard's baseline: the base model's samples of the probe, so that a restarted
        daemon compares its versions with the same model as before, not with the (already
        sharpened) version it resumed. After a resume the base weights are swapped in for
        the probe and the trainer's (the serving version's) swapped back; base files that
        cannot be read leave the serving version as the baseline (logged)."""
        assert self.engine is not None and self.trainer is not None
        if self.version == 0 or not self._probe_chosen():
            return self._probe_stats()
        base = resolve_model_path(self.cfg.engine.model)
        try:
            self.engine.load_checkpoint(base, 0)
            return self._probe_stats()
        except (OSError, ValueError) as exc:  # ModelFilesError is a ValueError
            logger.error(
                "guard: cannot load the base model {} ({}); baseline is version {}",
                base,
                exc,
                self.version,
            )
        finally:  # also after a partial load (vLLM streams the files in)
            self.engine.update_weights(
                self.trainer.named_tensors(), self.version, share=self.trainer.shares_weights
            )
        return self._probe_stats()

    def _check(self, stats: guard.ProbeStats, kl: float | None) -> list[guard.Decision]:
        if self.baseline is None:
            return []
        decisions = guard.check(stats, self.baseline, self.best_canary, kl, self.guard_cfg)
        for d in decisions:
            if d.tripped:
                m.GUARD_TRIPS.labels(d.signal).inc()
                logger.warning(
                    "guard: {} = {:.4g} (threshold {:.4g}) -> {}",
                    d.signal,
                    d.value,
                    d.threshold,
                    d.action,
                )
        return decisions

    def _roll_back(self, bad: int) -> None:
        """Serve (and train from) the best version before ``bad`` again."""
        assert self.engine is not None
        self.rollbacks += 1

        def restore(conn: Connection) -> tuple[int, str | None] | None:
            best = store.best_version(conn, below=bad, since=self.lineage_first)
            store.roll_back(conn, bad, best[0] if best else None)
            announce(conn, best[0] if best else 0)
            return best

        best = self._store(f"the rollback of version {bad}", restore)
        to, path = best if best else (0, None)
        base = resolve_model_path(self.cfg.engine.model)
        model_dir = Path(path) if path else base
        try:
            self.engine.load_checkpoint(model_dir, to)
        except (OSError, ValueError) as exc:  # ModelFilesError is a ValueError
            logger.error("cannot load version {} ({}); serving the base model", to, exc)
            to, model_dir = 0, base
            self.engine.load_checkpoint(model_dir, to)
            self._store("the fallback to the base", lambda c: store.roll_back(c, bad, None))
        self.trainer = None  # free the bad weights before loading the good ones
        self.trainer = self._make_trainer(model_dir, bad)
        self.version = to
        if self.replay is not None:
            self.replay.forget_after(to)
        m.ROLLBACKS.inc()
        m.MODEL_VERSION.set(to)
        logger.warning("guard: version {} rolled back; serving version {} again", bad, to)
        if self.rollbacks >= self.guard_cfg.max_rollbacks:
            logger.error("guard: {} rollbacks in a row", self.rollbacks)
            self._hold(to)

    def _hold(self, version: int) -> None:
        self.held = True
        logger.error(
            "guard: updates held at version {}; serving it. Inspect guard_decisions, then "
            "restart the service to resume training",
            version,
        )
        sd_notify(status=f"updates held by the collapse guard at version {version}")

    def _scheduled_guard(self) -> None:
        """The periodic check of the serving version (``guard.every_s``)."""
        self.guard_due.clear()
        if self.baseline is None:
            return  # nothing to compare with before the first update
        stats = self._probe_stats()
        if stats is None:
            return
        decisions = self._check(stats, None)
        serving = self.version
        self._store(
            "guard decisions",
            lambda c: store.record_decisions(c, serving, self.worker_id, decisions),
        )
        action = guard.verdict(decisions)
        if action == "rollback" and serving > 0:
            self._roll_back(serving)
        elif action in ("hold", "rollback"):
            self._hold(serving)

    def _checkpoint_path(self, version: int) -> Path:
        return Path(self.daemon_cfg.checkpoint_dir).resolve() / f"v{version:06d}"

    def _prune_checkpoints(self) -> None:
        """Keep the newest ``keep_checkpoints`` directories, the active one and the guard's
        rollback target."""
        with transaction(self.db, write=False) as conn:
            best = store.best_version(conn, below=self.version + 1, since=self.lineage_first)
        keep = {self._checkpoint_path(self.version)} | (
            {Path(best[1])} if best and best[1] else set()
        )
        root = Path(self.daemon_cfg.checkpoint_dir)
        dirs = sorted(p for p in root.glob("v[0-9]*") if p.is_dir())
        for old in dirs[: -self.daemon_cfg.keep_checkpoints]:
            if old.resolve() not in {k.resolve() for k in keep}:
                shutil.rmtree(old, ignore_errors=True)

    # -- scheduled jobs --------------------------------------------------------------------

    def _start_jobs(self) -> None:
        # A job still waiting on a hung database when its next run is due is skipped: said
        # once by the outage lines, not by APScheduler every second.
        logging.getLogger("apscheduler.scheduler").addFilter(_NoSkippedRuns())
        s, d = self.scheduler, self.daemon_cfg
        # A busy CPU delays jobs; APScheduler would drop a run over 1 s late by default.
        late = {"misfire_grace_time": None, "coalesce": True}
        renew_s = self.cfg.queue.lease_s / 3
        s.add_job(self._db_job(self._renew_leases), "interval", seconds=renew_s, id="renew", **late)
        s.add_job(self._db_job(self._reap), "interval", seconds=d.reap_every_s, id="reap", **late)
        s.add_job(self._db_job(self._beat), "interval", seconds=d.heartbeat_s, id="beat", **late)
        s.add_job(self._db_job(self._retention), "interval", hours=1, id="retention", **late)
        if d.updates:
            s.add_job(
                self.update_due.set, "interval", seconds=d.update_every_s, id="update", **late
            )
        ping = watchdog_interval()
        if ping:
            s.add_job(self._feed_watchdog, "interval", seconds=ping, id="watchdog", **late)
        # The guard runs where it trains.
        if self.guard_cfg.enabled and self.guard_cfg.every_s and self.trains:
            s.add_job(
                self.guard_due.set, "interval", seconds=self.guard_cfg.every_s, id="guard", **late
            )
        s.start()

    def _db_job(self, job: Callable[[], None]) -> Callable[[], None]:
        """A scheduled job that needs the database skips its run during an outage, quietly:
        the main loop reports the outage (one clear line per retry, not a traceback per job)."""

        def run() -> None:
            if self.outage_since is not None:
                return  # the main loop retries; a job would only wait on the same outage
            try:
                job()
            except OperationalError as exc:
                if "statement timeout" in str(exc.orig):  # the server is up: say it
                    logger.warning(
                        "{} ran past database.statement_timeout_s and was cancelled: {}",
                        job.__name__,
                        str(exc.orig).strip().splitlines()[0],
                    )
                    return
                logger.debug("{} skipped: database unavailable ({})", job.__name__, exc.orig)

        return run

    def _feed_watchdog(self) -> None:
        """WATCHDOG=1 only while the loop makes progress: a hung loop gets restarted."""
        stalled = time.monotonic() - self.progress_at
        if stalled < self.daemon_cfg.stall_s:
            sd_notify(watchdog=1)
        else:
            logger.error("no progress for {:.0f}s: letting systemd's watchdog fire", stalled)

    def _reschedule_update_timer(self) -> None:
        if self.scheduler.get_job("update"):
            self.scheduler.reschedule_job(
                "update", trigger="interval", seconds=self.daemon_cfg.update_every_s
            )

    def _renew_leases(self) -> None:
        ids = list(self.in_flight)
        if ids:
            with transaction(self.db) as conn:
                kept = queue.renew(conn, ids, self.worker_id, self.cfg.queue.lease_s)
            if len(kept) < len(ids):
                logger.warning("lost the lease of problems {}", sorted(set(ids) - kept))

    def _reap(self) -> None:
        with transaction(self.db) as conn:
            n = queue.reap(conn, self.cfg.queue.max_attempts)
        m.LEASES_REAPED.inc(n)
        if n:
            logger.info("reaped {} expired leases", n)

    def _beat(self, state: str | None = None) -> None:
        with transaction(self.db) as conn:
            store.heartbeat(conn, self.worker_id, state, self.version)

    def _retention(self) -> None:
        cutoff = utcnow() - timedelta(days=self.daemon_cfg.retention_days)
        with transaction(self.db) as conn:
            n = store.prune_rollout_texts(
                conn, cutoff, self.version - self.daemon_cfg.max_staleness
            )
        if n:
            logger.info("pruned the texts of {} trained rollouts", n)

    def _status_line(self) -> str:
        voted = m.REGISTRY.get_sample_value("ttrl_problems_voted_total") or 0
        updates = m.REGISTRY.get_sample_value("ttrl_updates_total") or 0
        return f"version {self.version}, voted {voted:.0f}, updates {updates:.0f}"
