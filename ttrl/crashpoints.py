"""Fault injection for the chaos tests: die at a named point, as a power cut would.

``TTRL_CRASH_AT=point:n`` makes the process SIGKILL itself the n-th time it reaches
``crash_point(point)`` (n defaults to 1). Unset (always, outside tests) it costs one
dictionary lookup. The points name the windows a crash-safe daemon must survive:

- ``sampled``: rollouts in memory, nothing of them written;
- ``vote_written``: the vote and its rollouts written, the transaction not committed;
- ``trained``: weights updated in memory, no checkpoint yet;
- ``checkpoint_files``: checkpoint files in the temp directory, not renamed into place;
- ``checkpoint_renamed``: checkpoint in place, its model version row not committed.
"""

from __future__ import annotations

import os
import signal

ENV = "TTRL_CRASH_AT"
POINTS = ("sampled", "vote_written", "trained", "checkpoint_files", "checkpoint_renamed")
_hits: dict[str, int] = {}


def parse(spec: str) -> tuple[str, int]:
    """``"point:n"`` or ``"point"`` -> (point, n); unknown points are an error."""
    point, _, count = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: unknown crash point; use one of {', '.join(POINTS)}")
    n = int(count) if count else 1
    if n < 1:
        raise ValueError(f"{ENV}={spec!r}: the hit count must be >= 1")
    return point, n


def crash_point(point: str) -> None:
    """SIGKILL this process if ``TTRL_CRASH_AT`` names ``point`` and this is its n-th hit."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, n = parse(spec)
    if target != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= n:
        os.kill(os.getpid(), signal.SIGKILL)
