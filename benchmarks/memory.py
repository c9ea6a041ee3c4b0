"""Resident memory of this process, for the benchmarks that print it (Linux)."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_gib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rss_gib() -> float:
    """This process's resident set size now (e.g. after an update: what stays)."""
    return resource.getpagesize() * int(Path("/proc/self/statm").read_text().split()[1]) / 2**30
