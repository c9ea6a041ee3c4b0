"""Time-bounded sympy / math-verify calls through a pool of killable worker processes.

Why processes: sympy can spin in C (GMP big integers, mpmath) where a Python signal is
not delivered, and signals only work in the main thread, while the daemon may vote from
worker threads. A child process that is SIGKILLed after `timeout_s` bounds wall time from
any thread. The killed worker is replaced at once (its start-up is not billed to a call).
Results, failures included, are memoised so a hostile answer costs its timeout only once.
"""

import atexit
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ttrl.answers import metrics
from ttrl.answers.config import AnswersConfig
from ttrl.answers.worker import _HEADER, write_message


class SymbolicUnavailable(RuntimeError):
    """The call timed out or its worker failed; use the answer's string key instead."""


class _Worker:
    """One child process running `ttrl.answers.worker`."""

    def __init__(self, config: AnswersConfig) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ttrl.answers.worker", str(config.worker_memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both PIPE
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.ready = False
        metrics.incr(metrics.WORKER_STARTS)

    def _read(self, n: int, deadline: float) -> bytes | None:
        """n bytes from the child, or None at the deadline."""
        fd = self.stdout.fileno()
        chunks: list[bytes] = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, n)
            if not chunk:
                raise SymbolicUnavailable("worker process exited")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _receive(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        header = self._read(_HEADER.size, deadline)
        payload = None if header is None else self._read(_HEADER.unpack(header)[0], deadline)
        if payload is None:
            raise TimeoutError
        return pickle.loads(payload)

    def request(self, op: str, args: tuple, timeout_s: float) -> Any:
        if not self.ready:
            try:
                self._receive(self.config.worker_start_timeout_s)
            except TimeoutError as exc:
                raise SymbolicUnavailable("worker did not start in time") from exc
            self.ready = True
        try:
            write_message(self.stdin.fileno(), (op, args))
        except OSError as exc:
            raise SymbolicUnavailable(f"worker pipe broke: {exc}") from exc
        status, value = self._receive(timeout_s)
        if status != "ok":
            raise SymbolicUnavailable(f"worker error: {value}")
        return value

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.stdin, self.stdout):
            pipe.close()


class WorkerPool:
    """`config.workers` workers shared by all threads; a call blocks for an idle one."""

    def __init__(self, config: AnswersConfig) -> None:
        self.config = config
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(config.workers):
            self._idle.put(None)  # started on first use
        self._memo: OrderedDict[tuple, tuple[bool, Any]] = OrderedDict()
        self._memo_lock = threading.Lock()

    def _remember(self, key: tuple, outcome: tuple[bool, Any]) -> None:
        with self._memo_lock:
            self._memo[key] = outcome
            while len(self._memo) > self.config.cache_size:
                self._memo.popitem(last=False)

    def call(self, op: str, *args: Any) -> Any:
        """Result of worker operation `op(*args)`, or SymbolicUnavailable within timeout_s."""
        key = (op, args)
        with self._memo_lock:
            outcome = self._memo.get(key)
            if outcome is not None:
                self._memo.move_to_end(key)
        if outcome is None:
            outcome, lasting = self._run(op, args)
            if lasting:
                self._remember(key, outcome)
        ok, value = outcome
        if not ok:
            raise SymbolicUnavailable(value)
        return value

    def _run(self, op: str, args: tuple) -> tuple[tuple[bool, Any], bool]:
        """((ok, result or reason), whether the outcome depends only on the input)."""
        worker = self._idle.get()
        try:
            if worker is None or worker.proc.poll() is not None:
                worker = _Worker(self.config)
            metrics.incr(metrics.SYMBOLIC_CALLS)
            return (True, worker.request(op, args, self.config.timeout_s)), True
        except TimeoutError:
            assert worker is not None  # only worker.request() times out
            metrics.incr(metrics.TIMEOUTS)
            worker.kill()
            worker = _Worker(self.config)  # replacement imports while the caller moves on
            return (False, f"{op} ran past {self.config.timeout_s}s"), True
        except (SymbolicUnavailable, OSError) as exc:
            # A crash or failed start may be the machine's fault, not the input's: not memoised.
            metrics.incr(metrics.WORKER_ERRORS)
            if worker is not None and (worker.proc.poll() is not None or not worker.ready):
                worker.kill()
                worker = None
            return (False, str(exc)), False
        finally:
            self._idle.put(worker)

    def warm_up(self) -> None:
        """Start every worker and wait until each has imported sympy (daemon start-up)."""
        workers = [self._idle.get() for _ in range(self.config.workers)]
        try:
            for i, worker in enumerate(workers):
                if worker is None:
                    workers[i] = worker = _Worker(self.config)
                worker.request("canonical", ("1",), self.config.worker_start_timeout_s)
        finally:
            for worker in workers:
                self._idle.put(worker)

    def close(self) -> None:
        """Kill all workers; the pool is unusable afterwards."""
        for _ in range(self.config.workers):
            worker = self._idle.get()
            if worker is not None:
                worker.kill()


_lock = threading.Lock()
_config = AnswersConfig()
_pool: WorkerPool | None = None


def configure(config: AnswersConfig) -> None:
    """Use `config` from now on (restarts the worker pool)."""
    global _config, _pool
    with _lock:
        old, _pool, _config = _pool, None, config
    if old is not None:
        old.close()


def get_config() -> AnswersConfig:
    """The configuration in force."""
    return _config


def pool() -> WorkerPool:
    """The process-wide worker pool, created on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = WorkerPool(_config)
        return _pool


@atexit.register
def _shutdown() -> None:
    if _pool is not None:
        _pool.close()
