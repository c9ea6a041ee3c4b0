"""Prometheus metrics of the service, served on 127.0.0.1 when ``daemon.metrics_port`` is set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY = CollectorRegistry()

PROBLEMS_VOTED = Counter(
    "ttrl_problems_voted", "Problem passes voted and stored.", registry=REGISTRY
)
ROLLOUTS = Counter("ttrl_rollouts", "Rollouts sampled and stored.", registry=REGISTRY)
UPDATES = Counter("ttrl_updates", "GRPO updates applied (new model versions).", registry=REGISTRY)
UPDATES_SKIPPED = Counter(
    "ttrl_updates_skipped",
    "GRPO updates skipped (no reward spread, non-finite).",
    registry=REGISTRY,
)
TRAINED_TOKENS = Counter("ttrl_trained_tokens", "Completion tokens trained on.", registry=REGISTRY)
MODEL_VERSION = Gauge("ttrl_model_version", "Model version now served.", registry=REGISTRY)
VOTE_SHARE = Gauge("ttrl_last_vote_share", "Vote share of the newest vote.", registry=REGISTRY)
UPDATE_SECONDS = Gauge(
    "ttrl_last_update_seconds", "Duration of the newest update.", registry=REGISTRY
)
SWAP_SECONDS = Gauge(
    "ttrl_last_swap_seconds", "Duration of the newest weight swap.", registry=REGISTRY
)
DB_OUTAGE_SECONDS = Gauge(
    "ttrl_database_outage_seconds",
    "How long the database has been unreachable (0: reachable).",
    registry=REGISTRY,
)
GUARD_TRIPS = Counter(
    "ttrl_guard_trips", "Collapse-guard signals tripped.", ["signal"], registry=REGISTRY
)
ROLLBACKS = Counter(
    "ttrl_rollbacks", "Model versions rolled back by the collapse guard.", registry=REGISTRY
)


def serve_metrics(port: int) -> None:
    """Expose the registry at http://127.0.0.1:PORT/metrics (a daemon thread)."""
    start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
