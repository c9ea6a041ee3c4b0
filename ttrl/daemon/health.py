"""What the service tells the outside world: systemd notifications and its log format."""

from __future__ import annotations

import os
import socket
import sys
import time

from loguru import logger


def under_systemd() -> bool:
    """True when stdout/stderr go to the journal (systemd sets JOURNAL_STREAM)."""
    return "JOURNAL_STREAM" in os.environ or "INVOCATION_ID" in os.environ


def setup_logging(level: str = "INFO") -> None:
    """Readable lines on a terminal, JSON lines under systemd (one object per record)."""
    logger.remove()
    if under_systemd():
        logger.add(sys.stderr, level=level, serialize=True)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}",
        )


class Progress:
    """When the main loop last made progress (monotonic seconds): systemd's watchdog is fed
    only while it is recent, so a hung loop gets restarted."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def touch(self) -> None:
        self.at = time.monotonic()

    def stalled_s(self) -> float:
        return time.monotonic() - self.at


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of systemd's WatchdogSec), or None when
    systemd watches no process here (WATCHDOG_USEC unset, or set for another PID). The
    parent counts too: under torchrun, rank 0 pings for the launcher systemd started."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid not in (str(os.getpid()), str(os.getppid()))):
        return None
    return int(usec) / 2e6


def sd_notify(**fields: str | int) -> bool:
    """Send ``KEY=value`` lines to systemd's notify socket (sd_notify(3)); a no-op, returning
    False, when the process was not started by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message, address)
        except OSError as exc:
            logger.warning("sd_notify to {} failed: {}", address, exc)
            return False
    return True
