"""Run the real `ttrl serve` until something happened, then stop it like systemd does;
shared by the daemon tests (``tests/`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TTRL = str(Path(sys.executable).with_name("ttrl"))

# configs/default.yaml carries the demo's recipe for the tiny model (mini-batches, a label
# share filter, a fast learning rate for the normalisation gains, a decay). The daemon tests
# check mechanics, not learning: they train with one plain AdamW step per update.
PLAIN_RL: dict[str, object] = {
    "mini_batches": 1,
    "min_label_share": 0.0,
    "norm_lr_scale": 1.0,
    "lr_decay_steps": None,
}


def serve_until(
    config: Path, env: dict[str, str], log: Path, done: Callable[[str], bool], timeout: float
) -> str:
    """Start `ttrl serve --config CONFIG` (output to ``log``), wait until ``done(log text)``
    while it stays alive, SIGTERM it and require exit 0; returns the log."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [TTRL, "serve", "--config", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        while not done(log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    return log.read_text()
