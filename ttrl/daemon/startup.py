"""What a daemon loads before it serves: the base model's identity (its lineage), the
version to resume, the engine and, where it trains, the trainer."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from sqlalchemy import Engine as SqlEngine

from ttrl import answers
from ttrl.config import ConfigError, Settings
from ttrl.daemon import model_versions, ranks
from ttrl.daemon.checkpoints import Checkpoints
from ttrl.db import transaction
from ttrl.engines import Engine, load_engine
from ttrl.lm.files import check_model_dir, fingerprint
from ttrl.lm.paths import resolve_model_path

if TYPE_CHECKING:
    from ttrl.rl.config import RLConfig


class LineageMismatch(RuntimeError):
    """``engine.model`` is not the base model the database's versions descend from."""


def rl_config(cfg: Settings) -> RLConfig:
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


def make_trainer(cfg: Settings, model_dir: Path, version: int) -> Any:
    """The trainer; under a multi-rank launcher (DeepSpeed) one the other ranks mirror."""
    rank, world = ranks.world()
    if world == 1:
        return build_trainer(cfg, model_dir, version)
    assert rank == 0, "ranks > 0 run ranks.follow, not the service"
    import torch

    ranks.init_process_group(torch.cuda.is_available())
    return ranks.MirroredTrainer(lambda d, v: build_trainer(cfg, d, v), model_dir, version)


def verify_weights(model_dir: Path, enabled: bool) -> None:
    """Every weight finite before the files serve (``daemon.verify_weights``): a model
    poisoned with NaN would fail every sample; ModelFilesError names the tensor."""
    if enabled:
        from ttrl.engines.weights import check_finite_files

        t0 = time.perf_counter()
        n = check_finite_files(model_dir)
        logger.info("{}: {} tensors finite ({:.1f}s)", model_dir, n, time.perf_counter() - t0)


def check_lineage(db: SqlEngine, cfg: Settings, base: Path) -> int:
    """The database's versions descend from one base model (its files' fingerprint,
    recorded by the first daemon); another ``engine.model`` is refused, or starts a new
    lineage with ``daemon.new_lineage``. Returns the lineage's first version number."""
    model, daemon_cfg, role = cfg.engine.model, cfg.daemon, cfg.daemon.role
    mark = fingerprint(base)
    with transaction(db) as conn:
        known = model_versions.current_lineage(conn)
        if known is None:
            model_versions.start_lineage(conn, model, str(base), mark)
            logger.info("lineage: model versions descend from {} ({})", model, base)
            return 1
        if known.fingerprint == mark:
            if daemon_cfg.new_lineage:
                logger.warning("daemon.new_lineage is set but engine.model is unchanged")
            return known.first_version
        if not daemon_cfg.new_lineage or role == "rollout":
            raise LineageMismatch(
                f"engine.model {model} ({base}, fingerprint {mark[:12]}) is not the base "
                f"model this database's versions descend from: {known.model} "
                f"({known.path}, fingerprint {known.fingerprint[:12]}, recorded "
                f"{known.created_at:%Y-%m-%d %H:%M} UTC). Set engine.model back to "
                f"{known.model}; or start a new lineage from {model} on this database "
                "with daemon.new_lineage: true (TTRL_DAEMON__NEW_LINEAGE=true) for one "
                "start of the learner (or the single daemon): the old versions are "
                "retired, its votes and answers stay; or use a new database"
                + ("; a rollout worker never starts one" if role == "rollout" else "")
            )
        first = model_versions.start_lineage(conn, model, str(base), mark, retire=True)
    logger.warning(
        "lineage: new base model {} ({}); versions from {} on descend from it, the old "
        "lineage ({}) is retired",
        model,
        base,
        first,
        known.model,
    )
    return first


@dataclass
class Loaded:
    """What :func:`load_models` resumed: the version served, its engine (None on a learner
    without the guard) and trainer (None where it does not train)."""

    version: int
    model_dir: Path
    base: Path  # engine.model's files: version 0, the lineage's identity
    engine: Engine | None
    trainer: Any
    lineage_first: int  # versions below belong to an older base model


def load_models(db: SqlEngine, cfg: Settings, checkpoints: Checkpoints, trains: bool) -> Loaded:
    """Resume from the newest active version whose files are complete, else the base."""
    answers.configure(cfg.answers)
    # The sympy workers start while the model loads (thread-safe: callers wait for them).
    threading.Thread(target=answers.warm_up, name="answers-warm-up", daemon=True).start()
    if trains:
        checkpoints.remove_partial()
    base = resolve_model_path(cfg.engine.model)
    # The configured files are always checked, also when a checkpoint is resumed: they
    # are the lineage's identity, the KL reference and the guard's baseline.
    check_model_dir(base)
    lineage_first = check_lineage(db, cfg, base)
    verify_weights(base, cfg.daemon.verify_weights)
    with transaction(db, write=False) as conn:
        newest = model_versions.newest_active_version(conn)
        numbered = model_versions.newest_version_number(conn)
    version, model_dir = checkpoints.resume_point(newest, base)
    if version:
        verify_weights(model_dir, cfg.daemon.verify_weights)
    engine = None
    # A learner samples only the guard's probe.
    if cfg.daemon.role != "learner" or cfg.guard.enabled:
        engine = load_engine(cfg.engine.model_copy(update={"model": str(model_dir)}), version)
    trainer = None
    if trains:
        # New versions are numbered after every recorded one: after a rollback the active
        # version is not the newest number (the rolled-back one and any retired in between
        # are), as in the learner's rollback.
        trainer = make_trainer(cfg, model_dir, numbered)
        if engine is not None and trainer.shares_weights:
            # One set of weights in memory: the engine serves the trainer's (the same).
            engine.update_weights(trainer.named_tensors(), version, share=True)
    logger.info("model {} at version {}", model_dir, version)
    return Loaded(version, model_dir, base, engine, trainer, lineage_first)
