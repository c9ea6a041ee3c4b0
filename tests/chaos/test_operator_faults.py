"""Faults an operator causes or meets (issue 21), each on SQLite and PostgreSQL where the
database matters: a poisoned model, an engine that fails every generation, a changed
``engine.model``, a busy metrics port, a start that fails (no ghost worker rows)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from daemon_parts import answerer
from sqlalchemy import Engine, select

from ttrl.config import load_settings
from ttrl.daemon import metrics as m
from ttrl.daemon import model_versions, records, startup, votes
from ttrl.daemon.answering import Answerer
from ttrl.daemon.breaker import EXIT_ENGINE_FAILURE
from ttrl.daemon.model_versions import VersionColumns
from ttrl.daemon.service import Service
from ttrl.daemon.startup import LineageMismatch
from ttrl.db import make_engine, queue, transaction
from ttrl.db.models import Lineage, ModelVersion, Problem, Rollout, Vote, Worker
from ttrl.db.queue import NewProblem
from ttrl.lm.files import ModelFilesError
from ttrl.lm.paths import resolve_model_path

TTRL = str(Path(sys.executable).with_name("ttrl"))
NAN_ERROR = "probability tensor contains either `inf`, `nan` or element < 0"


def tiny_copy(dest: Path) -> Path:
    return Path(shutil.copytree(resolve_model_path("builtin:tiny"), dest))


def poison(model_dir: Path) -> None:
    """NaN in every float weight: the safetensors header stays intact (same shapes)."""
    import torch
    from safetensors.torch import load_file, save_file

    file = model_dir / "model.safetensors"
    tensors = load_file(file)
    for name, t in tensors.items():
        if t.dtype.is_floating_point:
            tensors[name] = torch.full_like(t, float("nan"))
    save_file(tensors, file, metadata={"format": "pt"})


def nudge(model_dir: Path) -> None:
    """Another model of the same shape: one weight changed."""
    from safetensors.torch import load_file, save_file

    file = model_dir / "model.safetensors"
    tensors = load_file(file)
    name = next(n for n, t in tensors.items() if t.dtype.is_floating_point)
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, file, metadata={"format": "pt"})


def enqueue(db: Engine, n: int, prefix: str = "p") -> None:
    with transaction(db) as conn:
        queue.enqueue(
            conn, [NewProblem(f"What is {i} + 1?", external_id=f"{prefix}{i}") for i in range(n)]
        )


def problems(db: Engine) -> list:
    with transaction(db, write=False) as conn:
        return conn.execute(select(Problem.__table__).order_by(Problem.id)).all()


def workers(db: Engine) -> list:
    with transaction(db, write=False) as conn:
        return conn.execute(select(Worker.__table__)).all()


def serve(
    tmp_path: Path, db_url: str, config: dict, timeout: float = 180, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    full = {**os.environ, "TTRL_DB_URL": db_url, "OMP_NUM_THREADS": "1", **(env or {})}
    full.pop("TTRL_CRASH_AT", None)
    return subprocess.run(
        [TTRL, "serve", "--config", str(path)],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- the circuit breaker ---------------------------------------------------------------------


class BrokenEngine:
    """An engine whose every generation fails, as the tiny model with NaN weights does."""

    version = 0

    def __init__(self, error: Exception, bad_only: str | None = None) -> None:
        self.error = error
        self.bad_only = bad_only
        self.calls = 0

    def generate(self, prompts, n, sampling):
        self.calls += 1
        if self.bad_only is None or any(self.bad_only in p for p in prompts):
            raise self.error
        from ttrl.engines import Completion

        return [[Completion("so 1", [1], [2], "stop", 0) for _ in range(n)] for _ in prompts]


def run_with(db_url: str, engine: BrokenEngine, **overrides) -> tuple[Service, int]:
    """Service.run() in this process with ``engine`` instead of a loaded model."""
    cfg = load_settings(db_url=db_url)
    cfg = cfg.model_copy(
        update={
            "queue": cfg.queue.model_copy(update=overrides.pop("queue", {})),
            "daemon": cfg.daemon.model_copy(
                update={"updates": False, "poll_s": 0.05, **overrides.pop("daemon", {})}
            ),
        }
    )
    svc = Service(cfg)

    def load() -> None:
        svc.answerer = Answerer(cfg, svc.db, svc.worker_id, engine, svc.outages, svc.progress)

    svc.load_models = load  # type: ignore[method-assign]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    timer = None
    try:
        # A breaker that never trips would serve forever: stop the test after 60 s.
        import threading

        timer = threading.Timer(60, svc.stopping.set)
        timer.start()
        code = svc.run()
    finally:
        if timer is not None:
            timer.cancel()
        for s, h in handlers.items():
            signal.signal(s, h)
    return svc, code


def test_a_batch_failing_alike_trips_the_breaker_and_spends_no_attempt(engine: Engine) -> None:
    enqueue(engine, 20)
    broken = BrokenEngine(RuntimeError(NAN_ERROR))
    svc, code = run_with(str(engine.url.render_as_string(hide_password=False)), broken)
    assert code == EXIT_ENGINE_FAILURE == 79
    rows = problems(engine)
    assert [(r.status, r.attempts, r.claimed_by) for r in rows] == [("queued", 0, None)] * 20
    assert all(r.last_error is None for r in rows)
    (worker,) = workers(engine)
    assert worker.state == "halted"
    assert "engine failure" in worker.reason and NAN_ERROR in worker.reason
    assert m.REGISTRY.get_sample_value("ttrl_engine_breaker_open") == 1
    from rich.console import Console

    from ttrl.dashboards.status import workers_table

    console = Console(width=400, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    with transaction(engine, write=False) as conn:
        console.print(workers_table(conn))
    assert "halted: engine failure" in console.export_text()  # what `ttrl status` shows
    batch = svc.cfg.queue.claim_batch
    # The batch, each problem alone, the plain prompt (fails too): no second claim.
    assert broken.calls == 1 + batch + 1


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        # What the old HF engine raised under transformers 5 for every prompt: a ValueError.
        ValueError("The following `model_kwargs` are not used by the model: ['x']"),
    ],
    ids=["RuntimeError", "ValueError"],
)
def test_failures_in_a_row_trip_the_breaker_and_their_attempts_come_back(
    engine: Engine, error: Exception
) -> None:
    enqueue(engine, 6)
    broken = BrokenEngine(error)
    _, code = run_with(
        str(engine.url.render_as_string(hide_password=False)),
        broken,
        queue={"claim_batch": 1, "max_attempts": 1},
        daemon={"breaker_failures": 3},
    )
    assert code == 79
    rows = problems(engine)
    # Two were failed (max_attempts 1: for good) before the third tripped the breaker;
    # the refund put them back with their attempt.
    assert [(r.status, r.attempts) for r in rows] == [("queued", 0)] * 6
    assert str(error) in workers(engine)[0].reason
    assert broken.calls == 3 + 1  # three problems, then the plain prompt


def test_a_bad_prompt_still_fails_alone(engine: Engine) -> None:
    """One prompt the engine refuses (even with an engine-like error) among good ones: only
    that problem fails. A whole batch failing alike while a plain prompt samples (duplicate
    prompts, all too long) fails its problems, it does not trip the breaker."""
    url = str(engine.url.render_as_string(hide_password=False))
    enqueue(engine, 3)
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem("BAD prompt", external_id="bad")])
    svc = answerer(url, BrokenEngine(RuntimeError("boom"), bad_only="BAD"))
    with transaction(engine) as conn:
        claimed = queue.claim(conn, 4, svc.worker_id, 60)
    svc.in_flight = [c.id for c in claimed]
    requeued = m.REGISTRY.get_sample_value("ttrl_problem_failures_total", {"outcome": "requeued"})
    sampled = svc.generate(claimed)
    assert len(sampled) == 3
    after = m.REGISTRY.get_sample_value("ttrl_problem_failures_total", {"outcome": "requeued"})
    assert (after or 0) - (requeued or 0) == 1  # /metrics counts the failure
    bad = next(r for r in problems(engine) if r.external_id == "bad")
    assert bad.status == "queued" and bad.attempts == 1 and "boom" in bad.last_error

    too_long = ValueError("prompts[0] has 900 tokens; shorten the prompt")
    svc.engine = BrokenEngine(too_long, bad_only="long")
    with transaction(engine) as conn:
        queue.enqueue(conn, [NewProblem(f"long {i}", priority=1) for i in range(12)])
        claimed = queue.claim(conn, 12, svc.worker_id, 60)
    svc.in_flight = [c.id for c in claimed]
    assert svc.generate(claimed) == []  # no EngineFailure: each failed alone
    assert svc.in_flight == []
    assert all(r.attempts == 1 for r in problems(engine) if r.prompt.startswith("long"))
    svc.db.dispose()


@pytest.mark.slow
def test_a_nan_model_is_refused_at_load_with_the_queue_untouched(
    db_url: str, tmp_path: Path
) -> None:
    model = tiny_copy(tmp_path / "nan-model")
    poison(model)
    assert (
        subprocess.run(
            [TTRL, "db", "upgrade"], env={**os.environ, "TTRL_DB_URL": db_url}, capture_output=True
        ).returncode
        == 0
    )
    db = make_engine(db_url)
    enqueue(db, 25)
    r = serve(tmp_path, db_url, {"engine": {"model": str(model)}})
    assert r.returncode == 78, r.stderr[-3000:]
    assert "holds NaN or inf" in r.stderr and str(model) in r.stderr
    assert "Traceback" not in r.stderr
    assert [(p.status, p.attempts) for p in problems(db)] == [("queued", 0)] * 25
    (worker,) = workers(db)  # no ghost: the failed start says so
    assert worker.state == "stopped" and "NaN" in worker.reason
    db.dispose()


@pytest.mark.slow
def test_a_nan_model_unchecked_trips_the_breaker_on_the_real_engine(
    db_url: str, tmp_path: Path
) -> None:
    """daemon.verify_weights off: the real tiny model with NaN weights fails every sample;
    the breaker stops the daemon with exit 79 and every problem queued, attempts unspent."""
    model = tiny_copy(tmp_path / "nan-model")
    poison(model)
    env = {**os.environ, "TTRL_DB_URL": db_url}
    assert subprocess.run([TTRL, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    db = make_engine(db_url)
    enqueue(db, 25)
    config = {
        "engine": {"model": str(model)},
        "daemon": {"verify_weights": False, "updates": False, "votes": 2},
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        r = serve(tmp_path, db_url, config, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        notify.setblocking(False)
        messages = []
        with contextlib.suppress(BlockingIOError):
            while True:
                messages.append(notify.recv(65536).decode())
    assert r.returncode == 79, r.stderr[-3000:]
    assert "circuit breaker" in r.stderr and "Traceback" not in r.stderr
    assert any("STATUS=HALTED by the circuit breaker" in msg for msg in messages), messages
    assert [(p.status, p.attempts) for p in problems(db)] == [("queued", 0)] * 25
    (worker,) = workers(db)
    assert worker.state == "halted" and "engine failure" in worker.reason
    db.dispose()


# -- start-up misconfigurations: one line, exit 78, no ghost rows -----------------------------


@pytest.mark.slow
def test_a_busy_metrics_port_exits_78_in_one_line(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "TTRL_DB_URL": db_url}
    assert subprocess.run([TTRL, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = serve(tmp_path, db_url, {"daemon": {"metrics_port": port}})
    assert r.returncode == 78, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"daemon.metrics_port {port}" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    db = make_engine(db_url)
    (worker,) = workers(db)
    assert worker.state == "stopped" and "metrics_port" in worker.reason
    db.dispose()


# -- the model lineage ----------------------------------------------------------------------


def lineage_service(db_url: str, model: Path, **daemon) -> Service:
    cfg = load_settings(db_url=db_url)
    return Service(
        cfg.model_copy(
            update={
                "engine": cfg.engine.model_copy(update={"model": str(model)}),
                "daemon": cfg.daemon.model_copy(update=daemon),
            }
        )
    )


def check_lineage(svc: Service, base: Path) -> int:
    return startup.check_lineage(svc.db, svc.cfg, base)


def test_a_changed_base_model_is_refused_or_starts_a_new_lineage(
    engine: Engine, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    first, other = tiny_copy(tmp_path / "a"), tiny_copy(tmp_path / "b")
    nudge(other)
    svc = lineage_service(url, first)
    check_lineage(svc, first)  # the first start records the lineage
    check_lineage(svc, first)  # the same files again: fine
    enqueue(engine, 1)
    with transaction(engine) as conn:  # versions 1, 2 of it, 2 active, a rollout untrained
        model_versions.add_version(conn, 1, 0, str(first), VersionColumns(), status="active")
        model_versions.add_version(conn, 2, 1, str(first), VersionColumns(), status="active")
        votes.record_vote(
            conn,
            records.VoteRecord(
                1,
                0,
                2,
                "1",
                "1",
                1.0,
                1,
                False,
                None,
                [records.RolloutRecord("so 1", [1], [2], "stop", "1", "1", 1.0)],
            ),
            "w",
        )
    svc.db.dispose()

    changed = lineage_service(url, other)
    with pytest.raises(LineageMismatch) as refused:
        check_lineage(changed, other)
    message = str(refused.value)
    assert str(first) in message and str(other) in message
    assert "daemon.new_lineage: true" in message and "TTRL_DAEMON__NEW_LINEAGE" in message
    rollout = lineage_service(url, other, new_lineage=True, role="rollout")
    with pytest.raises(LineageMismatch, match="a rollout worker never starts one"):
        check_lineage(rollout, other)

    told = lineage_service(url, other, new_lineage=True)
    first_version = check_lineage(told, other)
    assert first_version == 3
    with transaction(engine, write=False) as conn:
        assert model_versions.newest_active_version(conn) is None  # the new base serves, not v2
        assert conn.execute(select(Rollout.trained_in_version)).scalar_one() == 2  # consumed
        assert len(conn.execute(select(Lineage.__table__)).all()) == 2
        assert model_versions.best_version(conn, below=10, since=first_version) is None
        assert {v.status for v in conn.execute(select(ModelVersion.__table__))} == {"retired"}
        assert conn.execute(select(Vote.id)).all()  # votes and answers stay
    # The old model is now the stranger.
    with pytest.raises(LineageMismatch):
        check_lineage(lineage_service(url, first), first)
    for s in (changed, rollout, told):
        s.db.dispose()


def test_the_configured_model_is_checked_even_when_resuming(engine: Engine, tmp_path: Path) -> None:
    url = engine.url.render_as_string(hide_password=False)
    good = tiny_copy(tmp_path / "v1")
    with transaction(engine) as conn:
        model_versions.add_version(conn, 1, 0, str(good), VersionColumns(), status="active")
    broken = tiny_copy(tmp_path / "base")
    file = broken / "model.safetensors"
    os.truncate(file, file.stat().st_size // 2)
    svc = lineage_service(url, broken)
    with pytest.raises(ModelFilesError, match="corrupt or truncated"):
        svc.load_models()
    svc.db.dispose()


@pytest.mark.slow
def test_serve_with_another_model_exits_78(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "TTRL_DB_URL": db_url}
    assert subprocess.run([TTRL, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    db = make_engine(db_url)
    with transaction(db) as conn:
        model_versions.start_lineage(conn, "builtin:tiny", "/elsewhere", "0" * 64)
    r = serve(tmp_path, db_url, {"daemon": {"updates": False}})
    assert r.returncode == 78, r.stderr[-3000:]
    assert "is not the base model this database's versions descend from" in r.stderr
    assert "Traceback" not in r.stderr
    assert workers(db)[0].state == "stopped"
    db.dispose()


# -- canaries enqueued while the daemon runs ------------------------------------------------


@pytest.mark.slow
def test_a_canary_enqueued_while_running_is_probed_by_the_next_version(tmp_path: Path) -> None:
    from serving import PLAIN_RL
    from toy_queue import enqueue_toy

    db_url = f"sqlite:///{tmp_path / 'ttrl.db'}"
    env = {**os.environ, "TTRL_DB_URL": db_url, "OMP_NUM_THREADS": "1"}
    env.pop("TTRL_CRASH_AT", None)
    assert subprocess.run([TTRL, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    db = make_engine(db_url)
    enqueue_toy(db, 5, 16, 50, "live")
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {"sampling": {"temperature": 1.3, "max_new_tokens": 32}},
                "rl": {**PLAIN_RL, "lr": 1e-4, "warmup_steps": 0},
                "queue": {"claim_batch": 4},
                "daemon": {
                    "votes": 4,
                    "update_every_groups": 4,
                    "poll_s": 0.2,
                    "checkpoint_dir": str(tmp_path / "checkpoints"),
                },
                "guard": {"every_updates": 1, "probe_prompts": 4, "probe_samples": 2},
            }
        )
    )

    def versions() -> list:
        with transaction(db, write=False) as conn:
            return conn.execute(
                select(ModelVersion.version, ModelVersion.canary_pass1).order_by(
                    ModelVersion.version
                )
            ).all()

    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [TTRL, "serve", "--config", str(config)], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 300
        while not versions():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert versions()[0].canary_pass1 is None  # no canary yet
        with transaction(db) as conn:
            queue.enqueue(
                conn,
                [
                    NewProblem("What is 2 + 3?", reference_answer="5", batch="canary"),
                    NewProblem("What is 4 + 4?", reference_answer="8", batch="canary"),
                ],
            )
        # The update of version seen + 1 may have begun before the canaries were committed;
        # that of seen + 2 begins after seen + 1 was published, so after the enqueue.
        seen = max(v.version for v in versions()) + 1
        while not [v for v in versions() if v.version > seen]:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    later = [v for v in versions() if v.version > seen]
    assert later[0].canary_pass1 is not None, log.read_text()  # NULL before the fix
    assert "measuring the baseline again" in log.read_text()
    db.dispose()


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a host without CUDA")
def test_any_other_start_failure_is_one_line_and_exit_78(db_url: str, tmp_path: Path) -> None:
    """engine.device: cuda on a host without it raised a traceback and exit 1 (restarted
    every RestartSec by the unit)."""
    env = {**os.environ, "TTRL_DB_URL": db_url}
    assert subprocess.run([TTRL, "db", "upgrade"], env=env, capture_output=True).returncode == 0
    r = serve(tmp_path, db_url, {"engine": {"device": "cuda"}, "daemon": {"updates": False}})
    assert r.returncode == 78, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "cannot start: ValueError" in r.stderr
    db = make_engine(db_url)
    assert workers(db)[0].state == "stopped" and "CUDA" in workers(db)[0].reason
    db.dispose()
