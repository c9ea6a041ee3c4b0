"""Process-wide counters of the answers package, read by the daemon's /metrics."""

import threading
from collections import Counter

# Names of the counters; `snapshot()` always reports all of them.
TIMEOUTS = "timeouts"  # a sympy/math-verify call ran past timeout_s; its worker was killed
WORKER_ERRORS = "worker_errors"  # a worker died or failed to start; the call fell back
WORKER_STARTS = "worker_starts"  # worker processes started (first start and replacements)
OVERSIZE = "oversize"  # answers longer than max_symbolic_chars, never sent to sympy
SYMBOLIC_CALLS = "symbolic_calls"  # calls that reached a worker process
NAMES = (TIMEOUTS, WORKER_ERRORS, WORKER_STARTS, OVERSIZE, SYMBOLIC_CALLS)

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def incr(name: str, by: int = 1) -> None:
    """Add `by` to counter `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"unknown answers metric {name!r}; expected one of {NAMES}")
    with _lock:
        _counts[name] += by


def timeouts() -> int:
    """Number of sympy/math-verify calls that hit the time bound since start (or reset)."""
    with _lock:
        return _counts[TIMEOUTS]


def snapshot() -> dict[str, int]:
    """All counters, for export."""
    with _lock:
        return {name: _counts[name] for name in NAMES}


def reset() -> None:
    """Zero all counters (tests, benchmarks)."""
    with _lock:
        _counts.clear()
