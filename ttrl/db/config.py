"""Network timeouts of the database connections (mounted at ``database:`` in the config tree).

They apply to PostgreSQL (SQLite is a local file: its only wait is the busy timeout). A
libpq parameter written in the URL itself (``?connect_timeout=5``, ``?keepalives_idle=60``,
``?options=-c%20statement_timeout%3D0``) wins over the setting here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect_timeout_s: int = Field(
        10,
        ge=2,
        description="Give up a connection attempt (TCP, TLS, authentication) after this long "
        "(libpq connect_timeout; 2 is its minimum).",
    )
    statement_timeout_s: float | None = Field(
        300.0,
        gt=0,
        description="The server cancels a statement running longer (PostgreSQL "
        "statement_timeout); None: no limit. `ttrl db upgrade` runs without it.",
    )
    io_timeout_s: float | None = Field(
        30.0,
        gt=0,
        description="A call that waits this long for the server is checked with a fresh "
        "connection: when that one gets no answer either, the waiting connection is cut and "
        "the call fails like a refused connection (an outage). A slow query on a live server "
        "is left to statement_timeout_s. None: never cut.",
    )
    keepalives_idle_s: int = Field(
        30, ge=1, description="TCP keepalive probes start after this long idle..."
    )
    keepalives_interval_s: int = Field(10, ge=1, description="...are sent this often...")
    keepalives_count: int = Field(
        3, ge=1, description="...and this many unanswered ones drop the connection."
    )
    tcp_user_timeout_s: int = Field(
        30,
        ge=0,
        description="Data sent but unacknowledged this long drops the connection (Linux "
        "TCP_USER_TIMEOUT); 0: the kernel's default (about 15 minutes).",
    )
