"""TCP on loopback that stops answering: a listener that never accepts, and a proxy to a
real server that can be frozen (its connections stay open, nothing is forwarded) and thawed.
Shared by the tests (``tests/`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 whose kernel completes TCP handshakes that no one ever reads."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


class FreezableProxy:
    """Forwards 127.0.0.1:port to ``upstream``; ``freeze()`` stops all forwarding (new
    connections wait in the backlog), ``thaw()`` resumes it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()
        self.running.set()
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.running.clear()

    def thaw(self) -> None:
        self.running.set()

    def close(self) -> None:
        self.closed.set()
        self.running.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            self.running.wait()
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.2)
                if not ready or not self.running.is_set():
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self.closed.is_set():
                if not self.running.is_set():
                    self.running.wait(0.2)
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                if not self.running.is_set():
                    continue
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()
