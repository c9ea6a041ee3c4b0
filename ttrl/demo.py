"""`ttrl demo`: the real daemon loop on the shipped tiny model, before/after figures included.

A fresh work dir gets a SQLite database and synthetic problems with reference answers (seen
only by the grading columns, never by the reward). The daemon answers and learns from them
for the time budget; the same problems are evaluated with ``ttrl eval``'s machinery before
and after, so the TTRL effect is measured on the problems it learned from without labels.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from loguru import logger
from sqlalchemy import case, func, select

from ttrl.config import Settings
from ttrl.daemon.service import Service
from ttrl.dashboards import views
from ttrl.db import make_engine, migrate, queue, transaction
from ttrl.db.queue import NewProblem
from ttrl.engines import load_engine
from ttrl.toy.evaluate import EvalReport, LabelledProblem, evaluate
from ttrl.toy.task import Problem, generate_problems

EVAL_SAMPLES = 16
# Every problem stays in the queue until the budget ends: TTRL revisits its test set.
DEMO_PASSES = 1_000_000
# The tiny model's matrices are too small to split usefully over more threads than this.
MAX_THREADS = 4


def run_demo(
    cfg: Settings,
    seed: int,
    minutes: float,
    n_problems: int,
    workdir: Path,
    max_versions: int | None = None,
) -> dict:
    """Run the demo in ``workdir`` for ``minutes`` or until ``max_versions`` model versions,
    whichever comes first; returns the summary that the last output line prints."""
    cfg, problems = demo_queue(cfg, seed, n_problems, workdir)
    labelled = [LabelledProblem(p.prompt, str(p.answer)) for p in problems]
    sampling = replace(cfg.engine.sampling, seed=seed)

    engine = load_engine(cfg.engine)
    logger.info("evaluating the base model on the {} problems", n_problems)
    before = evaluate(engine, labelled, EVAL_SAMPLES, sampling, cfg.engine.model)

    service = Service(cfg)
    timer = threading.Timer(minutes * 60, service.stopping.set)
    timer.start()
    if max_versions is not None:
        threading.Thread(target=_stop_at_version, args=(service, max_versions), daemon=True).start()
    t0 = time.perf_counter()
    try:
        service.run()
    finally:
        timer.cancel()
        service.stopping.set()
    seconds = time.perf_counter() - t0

    answers = answer_accuracy(cfg.db_url)
    if service.version:
        newest = service.checkpoints.path(service.version)
        engine.load_checkpoint(newest, service.version)
    logger.info("evaluating version {} on the same problems", service.version)
    after = evaluate(engine, labelled, EVAL_SAMPLES, sampling, f"version {service.version}")
    return summary(before, after, answers, service.version, seconds)


def demo_queue(
    cfg: Settings, seed: int, n_problems: int, workdir: Path, passes: int = DEMO_PASSES
) -> tuple[Settings, list[Problem]]:
    """The demo's workload in ``workdir``: a new SQLite database holding ``n_problems``
    synthetic problems of ``seed`` (with reference answers), each wanting ``passes`` passes,
    and checkpoints beside it. Returns the settings pointed there and the problems."""
    if (workdir / "ttrl.db").exists():
        # The service would resume from that run's newest version while "before" would
        # measure the base model: the comparison would mean nothing.
        raise FileExistsError(f"{workdir} already holds a demo database; choose a new --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.model_copy(
        update={
            "db_url": f"sqlite:///{workdir / 'ttrl.db'}",
            "daemon": cfg.daemon.model_copy(
                update={"checkpoint_dir": str(workdir / "checkpoints")}
            ),
        }
    )
    db = make_engine(cfg.db_url)
    migrate.upgrade(db)
    problems = list(generate_problems(seed, n_problems, ()))
    with transaction(db) as conn:
        queue.enqueue(
            conn,
            [
                NewProblem(
                    p.prompt,
                    external_id=f"demo-{seed}-{i}",
                    reference_answer=str(p.answer),
                    batch=f"demo-seed-{seed}",
                    passes=passes,
                )
                for i, p in enumerate(problems)
            ],
        )
    db.dispose()
    return cfg, problems


def answer_accuracy(db_url: str) -> float | None:
    """What users got at the end, graded against the hidden references: the share of the
    voted problems whose current answer (``v_answers``: its newest label) is right; None
    where nothing was voted."""
    a = views.answers.c
    db = make_engine(db_url)
    try:
        with transaction(db, write=False) as conn:
            return conn.execute(
                select(func.avg(case((a.answer_correct, 1.0), else_=0.0))).where(
                    a.answer.is_not(None), a.reference_answer.is_not(None)
                )
            ).scalar()
    finally:
        db.dispose()


def busy_share(before: Sequence[int], after: Sequence[int]) -> float:
    """The share of CPU time spent busy between two readings of /proc/stat's ``cpu`` line
    (user nice system idle iowait irq softirq steal, in jiffies); idle and iowait are idle."""
    spent = [b - a for a, b in zip(before[:8], after[:8], strict=True)]
    total = sum(spent)
    return 1.0 - (spent[3] + spent[4]) / total if total > 0 else 0.0


def _cpu_times() -> tuple[list[int], int]:
    """/proc/stat's summed ``cpu`` jiffies and the number of CPUs it counts."""
    lines = Path("/proc/stat").read_text().splitlines()
    total = [int(v) for v in lines[0].split()[1:]]
    return total, sum(1 for line in lines if line.startswith("cpu") and line[3].isdigit())


def busy_cores(seconds: float = 0.5) -> float:
    """How many cores are busy now, measured over ``seconds`` (/proc/stat). The 1-minute load
    average, the fallback where there is no /proc/stat, lags: right after other work it
    still counts that work."""
    try:
        before, cpus = _cpu_times()
        time.sleep(seconds)
        after, _ = _cpu_times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return busy_share(before, after) * cpus


def host_threads() -> int:
    """torch threads for the demo on this host: the cores the process may use that are idle
    now, at most :data:`MAX_THREADS`, at least one. On an idle 2-core box: 2 (seed 0, 100
    versions: 272 s of loop with 2 threads, 376 s with 1; README); with one core busy: 1
    (two threads then spin-wait on each other)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return max(1, min(cores, MAX_THREADS, round(cores - busy_cores())))


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads: ``threads``, else ``OMP_NUM_THREADS`` when set (the caller
    chose), else :func:`host_threads`. Returns the number set."""
    import torch

    if threads is None:
        chosen = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(chosen) if chosen.isdigit() and int(chosen) > 0 else host_threads()
    torch.set_num_threads(threads)
    logger.info("torch CPU threads: {}", threads)
    return threads


def _stop_at_version(service: Service, versions: int) -> None:
    while not service.stopping.wait(0.2):
        if service.version >= versions:
            service.stopping.set()


def summary(
    before: EvalReport, after: EvalReport, answers: float | None, versions: int, seconds: float
) -> dict:
    """The demo's JSON line: the base model and the newest version evaluated at the sampling
    temperature, and the daemon's answers. Before the loop, the daemon would answer each
    problem with the base model's majority of N votes: ``maj_before``."""
    return {
        "answers_before": round(before.maj_at_n, 4),
        "answers_after": None if answers is None else round(answers, 4),
        "pass1_before": round(before.pass_at_1, 4),
        "pass1_after": round(after.pass_at_1, 4),
        "maj_before": round(before.maj_at_n, 4),
        "maj_after": round(after.maj_at_n, 4),
        # What RL on its own majority can also do: firm up a wrong answer, which shows here.
        "greedy_before": round(before.greedy_accuracy, 4),
        "greedy_after": round(after.greedy_accuracy, 4),
        "versions": versions,
        "seconds": round(seconds, 1),
    }
