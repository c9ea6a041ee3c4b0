"""The sympy / math-verify side of the answers package, run as a killable child process.

`bounded.py` starts `python -m ttrl.answers.worker MEMORY_MB` and talks to it over its
stdin/stdout with length-prefixed pickles: ("ready",) once imported, then one reply per
request. Nothing here bounds time: the parent kills this process when a call runs late,
which works from any thread and even inside C loops (GMP, mpmath) that ignore signals.
"""

import contextlib
import logging
import os
import pickle
import resource
import signal
import struct
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_HEADER = struct.Struct(">I")


def write_message(fd: int, message: Any) -> None:
    """Send one length-prefixed pickle on a file descriptor."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = _HEADER.pack(len(payload)) + payload
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


@lru_cache(maxsize=4096)
def _parse(text: str) -> list:
    from math_verify import LatexExtractionConfig, parse

    # parsing_timeout=None: math-verify's own bound is SIGALRM; this process is the bound.
    return parse(f"${text}$", extraction_config=[LatexExtractionConfig()], parsing_timeout=None)


def _degenerate(value: Any) -> bool:
    """zoo / nan anywhere (`1:00` parses as 1/0, `\\frac{0}{0}` as nan): not a value at all."""
    import sympy

    try:
        return bool(value.has(sympy.zoo, sympy.nan))
    except Exception:  # an object sympy cannot search is not degenerate
        return False


def canonical_form(text: str) -> tuple[str, str] | str | None:
    """(LaTeX, srepr) of the normal form of `text`'s sympy value, or None if it does not parse.

    "degenerate" when the value is or contains zoo / nan (division by zero, `12:00` read as
    12/0): such answers keep their own string key, so two of them never share a key.

    Constants are simplified (denominators rationalised, powers evaluated: `1/(1+sqrt 2)` ->
    `sqrt 2 - 1`), which is what lets them reach an exact key. Expressions with symbols are
    only expanded: `simplify` costs up to ~100x more there, `expand` already gives factored
    and expanded polynomials one form, and what it leaves apart (trig identities) is merged
    later by `verify` on the few pairs that need it.
    """
    import sympy

    parsed = _parse(text)
    if not parsed or not isinstance(parsed[0], sympy.Basic | sympy.MatrixBase):
        return None
    value = parsed[0]
    if _degenerate(value):
        return "degenerate"
    if isinstance(value, sympy.Expr):
        # doit: the parser builds unevaluated trees (`x + x`); either step can fail on
        # unusual objects the parser returns, which are then kept as parsed.
        with contextlib.suppress(Exception):
            value = value.doit()
            value = sympy.expand(value) if value.free_symbols else sympy.simplify(value)
    if _degenerate(value):
        return "degenerate"
    return sympy.latex(value), sympy.srepr(value)


def verify_both(a: str, b: str) -> bool:
    """math-verify equivalence required in both directions, so the relation is symmetric."""
    from math_verify import verify

    pa, pb = _parse(a), _parse(b)
    if not pa or not pb or _degenerate(pa[0]) or _degenerate(pb[0]):
        return False
    return verify(pa, pb, timeout_seconds=None) and verify(pb, pa, timeout_seconds=None)


OPERATIONS: dict[str, Callable[..., Any]] = {"canonical": canonical_form, "verify": verify_both}


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process if the parent dies (no orphaned sympy loops)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    """Serve requests until stdin closes."""
    memory_mb = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon's Ctrl-C is for the daemon
    # Keep the protocol channel private: stray prints from libraries go to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    in_fd = sys.stdin.fileno()
    logging.disable(logging.WARNING)
    # Warm the LaTeX parser and simplifier before "ready": their first use costs ~0.3 s,
    # which would otherwise be billed to (and often time out) a real call.
    canonical_form(r"\frac{x^{2}+1}{\sqrt{2}}")
    verify_both(r"\{1, x\}", r"(x+1)^2")
    _parse.cache_clear()
    write_message(out_fd, ("ready",))
    while True:
        header = _read_exactly(in_fd, _HEADER.size)
        if header is None:
            return
        payload = _read_exactly(in_fd, _HEADER.unpack(header)[0])
        if payload is None:
            return
        op, args = pickle.loads(payload)
        try:
            write_message(out_fd, ("ok", OPERATIONS[op](*args)))
        except Exception as exc:  # any failure goes back to the parent, which falls back
            write_message(out_fd, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    main()
