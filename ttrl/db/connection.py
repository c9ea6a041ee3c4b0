"""Database engines and transactions, with the per-dialect details in one place.

PostgreSQL connections never wait forever (``ttrl.db.config.DatabaseConfig``): a connect
timeout, TCP keepalives and a user timeout, a server-side statement timeout, and a watch of
every call: one that waits ``io_timeout_s`` for the server while a fresh connection gets no
answer either has its socket shut, so it fails as an ``OperationalError`` like a refused
connection and the caller's outage handling takes over.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url

from ttrl.db.config import DatabaseConfig


def utcnow() -> datetime:
    """Naive UTC now: the one clock of every timestamp ttrl writes."""
    return datetime.now(UTC).replace(tzinfo=None)


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver ttrl ships with."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def pg_connect_args(url: URL, timeouts: DatabaseConfig) -> dict[str, Any]:
    """libpq parameters for the timeouts; those the URL already names are left to it."""
    args: dict[str, Any] = {
        "connect_timeout": timeouts.connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalives_idle_s,
        "keepalives_interval": timeouts.keepalives_interval_s,
        "keepalives_count": timeouts.keepalives_count,
    }
    if timeouts.tcp_user_timeout_s:
        args["tcp_user_timeout"] = timeouts.tcp_user_timeout_s * 1000  # milliseconds
    if timeouts.statement_timeout_s is not None:
        args["options"] = f"-c statement_timeout={round(timeouts.statement_timeout_s * 1000)}"
    return {k: v for k, v in args.items() if k not in url.query}


def make_engine(url: str, timeouts: DatabaseConfig | None = None, **kwargs: Any) -> Engine:
    """An Engine for ``url``; SQLite gets WAL, a busy timeout and explicit ``BEGIN``;
    PostgreSQL the timeouts of ``timeouts`` (default: :class:`DatabaseConfig`'s)."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        timeouts = timeouts or DatabaseConfig()
        connect_args = pg_connect_args(make_url(url), timeouts)
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
        if timeouts.io_timeout_s is not None:
            _watch_calls(engine, HangWatch(engine.url, connect_args, timeouts.io_timeout_s))
        return engine
    engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE can be issued below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock up front: two deferred transactions that both
        # read then write would deadlock into SQLITE_BUSY instead of queueing.
        mode = "IMMEDIATE" if conn.get_execution_options().get("ttrl_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def transaction(engine: Engine, *, write: bool = True) -> Iterator[Connection]:
    """One transaction; commits on success, rolls back on any exception."""
    with engine.connect() as conn:
        if write:
            conn = conn.execution_options(ttrl_write=True)
        with conn.begin():
            yield conn


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


class HangWatch:
    """Cuts connections stuck in a call to a server that no longer answers.

    Every DBAPI call of the engine registers its connection's socket for its duration. A
    thread looks every second: a call older than ``io_timeout_s`` triggers one probe, a
    fresh connection running ``SELECT 1``; when that gets no answer within the connect
    timeout, the stuck sockets are shut down (``shutdown(2)``, which wakes the waiting
    thread with an error; the descriptor stays its owner's to close). A live server
    (a slow query, a lock wait) answers the probe and the call is left alone for another
    ``io_timeout_s``.
    """

    def __init__(self, url: URL, connect_args: dict[str, Any], io_timeout_s: float) -> None:
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.connect_args = connect_args
        self.io_timeout_s = io_timeout_s
        self.lock = threading.Lock()
        self.calls: dict[int, dict[str, Any]] = {}
        self.thread: threading.Thread | None = None

    @contextmanager
    def watch(self, dbapi_conn: Any) -> Iterator[None]:
        try:
            fd = dbapi_conn.fileno()
        except Exception:  # closed already: the call fails on its own, at once
            yield
            return
        now = time.monotonic()
        call = {"fd": fd, "started": now, "since": now, "cut": False}
        key = id(call)
        with self.lock:
            self.calls[key] = call
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="db-hang-watch", daemon=True)
                self.thread.start()
        try:
            yield
        except Exception as exc:
            if not call["cut"]:
                raise
            import psycopg

            with suppress(Exception):  # the socket is already shut; nothing to save
                dbapi_conn.close()
            waited = time.monotonic() - call["started"]
            raise psycopg.OperationalError(
                f"no answer from the database server for {waited:.0f}s, and none to a new "
                f"connection either (database.io_timeout_s={self.io_timeout_s:g}): "
                "connection cut"
            ) from exc
        finally:
            with self.lock:
                self.calls.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, self.io_timeout_s / 4))
            now = time.monotonic()
            with self.lock:
                if not self.calls:
                    self.thread = None
                    return
                stuck = [c for c in self.calls.values() if now - c["since"] >= self.io_timeout_s]
            if not stuck or self._server_answers():
                for call in stuck:  # alive: give the call another io_timeout_s
                    call["since"] = time.monotonic()
                continue
            with self.lock:
                for call in stuck:
                    if id(call) in self.calls and not call["cut"]:
                        call["cut"] = True
                        logger.warning(
                            "database: a call waited {:.0f}s and a new connection got no "
                            "answer either: cutting the connection",
                            time.monotonic() - call["started"],
                        )
                        _shut(call["fd"])

    def _server_answers(self) -> bool:
        """Whether a fresh connection runs ``SELECT 1`` within the connect timeout."""
        answered, done = threading.Event(), threading.Event()

        def probe() -> None:
            import psycopg

            try:
                with psycopg.connect(self.conninfo, autocommit=True, **self.connect_args) as c:
                    c.execute("SELECT 1")
                answered.set()
            except Exception:  # no answer is the finding
                return
            finally:
                done.set()

        threading.Thread(target=probe, name="db-hang-probe", daemon=True).start()
        done.wait(float(self.connect_args.get("connect_timeout") or 10) + 5)
        return answered.is_set()


def _shut(fd: int) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _watch_calls(engine: Engine, watch: HangWatch) -> None:
    """Route the dialect's DBAPI calls of ``engine`` through ``watch``."""
    dialect = engine.dialect

    def of_cursor(args: tuple[Any, ...]) -> Any:
        return args[0].connection

    def of_connection(args: tuple[Any, ...]) -> Any:
        return args[0]

    calls: dict[str, Callable[[tuple[Any, ...]], Any]] = {
        "do_execute": of_cursor,
        "do_executemany": of_cursor,
        "do_execute_no_params": of_cursor,
        "do_commit": of_connection,
        "do_rollback": of_connection,
        "do_ping": of_connection,
    }
    for name, connection_of in calls.items():
        original = getattr(dialect, name)

        def watched(
            *args: Any,
            _original: Callable[..., Any] = original,
            _of: Callable[[tuple[Any, ...]], Any] = connection_of,
            **kw: Any,
        ) -> Any:
            with watch.watch(_of(args)):
                return _original(*args, **kw)

        setattr(dialect, name, watched)
