"""The guard's baseline is the base model's probe, also after a restart: a daemon that resumes
a sharpened version must not take that version as its reference (the entropy floor would then
measure only the sharpening since the restart). In process, on the tiny model."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import torch
from sqlalchemy import Engine
from transformers import AutoModelForCausalLM

from ttrl.config import load_settings
from ttrl.daemon import guard, store
from ttrl.daemon.service import Service
from ttrl.db import queue, transaction
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


def probe(settings, model_dir: Path, prompts: list[str]) -> guard.ProbeStats:
    """The probe as the service samples it, by an engine of its own on ``model_dir``."""
    engine = load_engine(settings.engine.model_copy(update={"model": str(model_dir)}))
    g = settings.guard
    sampling = replace(settings.engine.sampling, seed=g.seed, logprobs=True)
    return guard.probe_stats(engine.generate(prompts, g.probe_samples, sampling), [None] * 4)


def serves_the_trainers_tensors(svc: Service) -> bool:
    live = svc.engine.model.state_dict()
    return all(live[name].data_ptr() == t.data_ptr() for name, t in svc.trainer.named_tensors())


def resumed_service(engine: Engine, db_url: str, tmp_path: Path):
    """A service resumed at version 1, a sharpened copy of its base (itself a copy of the
    tiny model under tmp_path/base); returns it with the probe's prompts."""
    base = shutil.copytree(resolve_model_path("builtin:tiny"), tmp_path / "base")
    settings = load_settings(
        db_url=db_url,
        engine={"model": str(base)},
        daemon={"checkpoint_dir": str(tmp_path / "checkpoints")},
        guard={"probe_prompts": 4, "probe_samples": 4},
    )
    v1 = sharpened_copy(base, tmp_path / "checkpoints" / "v000001")
    problems = [p.prompt for p in generate_problems(seed=5, count=4)]
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(p) for p in problems])
        store.add_version(conn, 1, 0, str(v1), {}, "active")
    svc = Service(settings)
    svc._load_models()
    assert svc.version == 1
    return svc, list(reversed(problems))  # the probe takes the newest first


def test_a_resumed_daemon_compares_with_the_base_model(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    svc, prompts = resumed_service(engine, db_url, tmp_path)
    assert serves_the_trainers_tensors(svc)  # one set of weights in memory (CPU, fp32)
    baseline = svc._base_probe_stats()

    base_stats = probe(svc.cfg, tmp_path / "base", prompts)
    v1_stats = probe(svc.cfg, tmp_path / "checkpoints" / "v000001", prompts)
    assert v1_stats.nll < 0.8 * base_stats.nll  # the resumed version is much sharper
    assert baseline == base_stats
    # ... and the resumed version serves again afterwards, as version 1: the base weights
    # went into the engine's own copies, never into the trainer's tensors it shares.
    assert svc.engine.version == 1
    assert svc._probe_stats() == v1_stats
    assert serves_the_trainers_tensors(svc)
    v1 = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoints" / "v000001").state_dict()
    assert all(torch.equal(t, v1[name]) for name, t in svc.trainer.named_tensors())
    svc.voter.shutdown()
    svc.db.dispose()


def test_unreadable_base_files_leave_the_serving_version_as_the_baseline(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    svc, prompts = resumed_service(engine, db_url, tmp_path)
    weights = tmp_path / "base" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated

    baseline = svc._base_probe_stats()

    assert baseline == probe(svc.cfg, tmp_path / "checkpoints" / "v000001", prompts)
    assert svc.engine.version == 1 and svc._probe_stats() == baseline
    svc.voter.shutdown()
    svc.db.dispose()
