"""The guard's baseline is the base model's probe, measured once and stored with the lineage:
a daemon that restarts on a sharpened version compares it with the base model as before, not
with that version (the entropy floor would then measure only the sharpening since the
restart), and without swapping the base weights into the engine that serves. In process, on
the tiny model."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from sqlalchemy import Engine, select
from transformers import AutoModelForCausalLM

from ttrl.config import Settings, load_settings
from ttrl.daemon import guard, model_versions
from ttrl.daemon.guarding import stats_from_json, stats_to_json
from ttrl.daemon.model_versions import VersionColumns
from ttrl.daemon.service import Service
from ttrl.db import queue, transaction
from ttrl.db.models import Lineage
from ttrl.db.queue import NewProblem
from ttrl.engines import load_engine
from ttrl.lm.paths import resolve_model_path
from ttrl.toy.task import generate_problems


def sharpened_copy(base: Path, out: Path) -> Path:
    """The base model with its logits doubled: a version that samples with lower entropy."""
    shutil.copytree(base, out)
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(2.0)
    model.save_pretrained(out, safe_serialization=True)
    return out


def probe(settings: Settings, model_dir: Path, prompts: list[str]) -> guard.ProbeStats:
    """The probe as the service samples it, by an engine of its own on ``model_dir``."""
    engine = load_engine(settings.engine.model_copy(update={"model": str(model_dir)}))
    g = settings.guard
    sampling = replace(settings.engine.sampling, seed=g.seed, logprobs=True)
    return guard.probe_stats(engine.generate(prompts, g.probe_samples, sampling), [None] * 4)


def started(settings: Settings) -> Service:
    """A service with its models loaded and its guard's baseline taken (as before its first
    update)."""
    svc = Service(settings)
    svc.load_models()
    svc.learner.keeper.before_update()
    return svc


def stopped(svc: Service) -> None:
    svc.answerer.voter.shutdown()
    svc.db.dispose()


def settings_for(db_url: str, tmp_path: Path) -> tuple[Settings, list[str]]:
    """Settings on a copy of the tiny model (tmp_path/base), four queued problems; returns
    them with the probe's prompts (newest first)."""
    base = shutil.copytree(resolve_model_path("builtin:tiny"), tmp_path / "base")
    settings = load_settings(
        db_url=db_url,
        engine={"model": str(base)},
        daemon={"checkpoint_dir": str(tmp_path / "checkpoints")},
        guard={"probe_prompts": 4, "probe_samples": 4},
    )
    return settings, [p.prompt for p in generate_problems(seed=5, count=4)]


def test_a_resumed_daemon_compares_with_the_stored_base_baseline(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings, problems = settings_for(db_url, tmp_path)
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(p) for p in problems])
    first = started(settings)  # version 0: the base model serves and is measured
    base_stats = probe(settings, tmp_path / "base", list(reversed(problems)))
    assert first.learner.keeper.baseline == base_stats
    stopped(first)

    v1 = sharpened_copy(tmp_path / "base", tmp_path / "checkpoints" / "v000001")
    with transaction(engine) as conn:
        model_versions.add_version(conn, 1, 0, str(v1), VersionColumns(), status="active")
        queue.enqueue(conn, [NewProblem("What is 1 + 2?")])  # a newer problem: not probed
    resumed = started(settings)
    keeper = resumed.learner.keeper
    assert resumed.version == 1
    assert keeper.baseline == base_stats  # read back, not the resumed version's
    assert keeper.probe == [(p, None) for p in reversed(problems)]  # the stored probe
    v1_stats = probe(settings, v1, list(reversed(problems)))
    assert v1_stats.nll < 0.8 * base_stats.nll  # the resumed version is much sharper
    # The engine never left version 1 (no base weights swapped in) and serves the
    # trainer's tensors: one set of weights in memory (CPU, fp32).
    assert resumed.serving.engine.version == 1 and keeper.probe_stats() == v1_stats
    live = resumed.serving.engine.model.state_dict()
    trainer = resumed.learner.trainer
    assert all(live[name].data_ptr() == t.data_ptr() for name, t in trainer.named_tensors())
    stopped(resumed)


def test_without_a_stored_baseline_the_serving_version_is_the_baseline(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """A database from before baselines were stored: the version resumed is measured (and
    stored as such); the base files are not loaded into the serving engine."""
    settings, problems = settings_for(db_url, tmp_path)
    v1 = sharpened_copy(tmp_path / "base", tmp_path / "checkpoints" / "v000001")
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(p) for p in problems])
        model_versions.add_version(conn, 1, 0, str(v1), VersionColumns(), status="active")
    svc = started(settings)
    v1_stats = probe(settings, v1, list(reversed(problems)))
    assert svc.learner.keeper.baseline == v1_stats and svc.serving.engine.version == 1
    with transaction(engine, write=False) as conn:
        row = conn.execute(select(Lineage.guard_baseline_version)).scalar_one()
        assert row == 1
    stopped(svc)


def test_a_baseline_measured_with_other_probe_settings_is_not_reused(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """guard.probe_samples (or the sampling) changed since the baseline was stored: it would
    compare versions on other dice, so the serving version is measured with the new ones."""
    settings, problems = settings_for(db_url, tmp_path)
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(p) for p in problems])
    stopped(started(settings))  # the base model's baseline, 4 samples a prompt
    v1 = sharpened_copy(tmp_path / "base", tmp_path / "checkpoints" / "v000001")
    with transaction(engine) as conn:
        model_versions.add_version(conn, 1, 0, str(v1), VersionColumns(), status="active")
    changed = settings.model_copy(
        update={"guard": settings.guard.model_copy(update={"probe_samples": 3})}
    )
    svc = started(changed)
    assert svc.learner.keeper.baseline == probe(changed, v1, list(reversed(problems)))
    with transaction(engine, write=False) as conn:
        stored = model_versions.stored_baseline(conn)
    assert stored is not None and stored.version == 1
    assert stored.settings["probe_samples"] == 3
    stopped(svc)


def test_stats_survive_json_without_nan() -> None:
    stats = guard.ProbeStats(0.75, 1.5, 0.0, math.inf, math.nan, None)
    data = stats_to_json(stats)
    assert data["nll"] is None and data["tokens"] is None  # PostgreSQL's JSON: no NaN, inf
    back = stats_from_json(stats_to_json(replace(stats, tokens=12.0)))
    assert math.isnan(back.nll) and replace(back, nll=0.0) == replace(stats, tokens=12.0, nll=0.0)
