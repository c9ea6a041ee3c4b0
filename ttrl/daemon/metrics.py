"""Prometheus metrics of the service, served on 127.0.0.1 when ``daemon.metrics_port`` is set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ttrl.config import ConfigError

REGISTRY = CollectorRegistry()

PROBLEMS_VOTED = Counter(
    "ttrl_problems_voted", "Problem passes voted and stored.", registry=REGISTRY
)
PROBLEMS_SETTLED = Counter(
    "ttrl_problems_settled",
    "Problems the adaptive pass policy settled before their passes ran out.",
    registry=REGISTRY,
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


GENERATION_FAILURES = Counter(
    "ttrl_generation_failures",
    "Calls of the engine's generate that raised (a batch, or one problem retried alone).",
    registry=REGISTRY,
)
PROBLEM_FAILURES = Counter(
    "ttrl_problem_failures",
    "Failed attempts recorded in the queue, by outcome: requeued (attempts left) or failed.",
    ["outcome"],
    registry=REGISTRY,
)
ENGINE_BREAKER = Gauge(
    "ttrl_engine_breaker_open",
    "1 once the engine failed systemically and the worker stopped claiming (it then exits).",
    registry=REGISTRY,
)
CLAIMS_RELEASED = Counter(
    "ttrl_claims_released",
    "Claims given back to the queue unanswered, the attempt not counted (stop, breaker).",
    registry=REGISTRY,
)
LEASES_REAPED = Counter(
    "ttrl_leases_reaped", "Expired leases (of any worker) returned to the queue.", registry=REGISTRY
)
DB_ERRORS = Counter(
    "ttrl_database_errors",
    "Database calls that failed as an outage (refused, cut, timed out) and were retried.",
    registry=REGISTRY,
)


def serve_metrics(port: int) -> None:
    """Expose the registry at http://127.0.0.1:PORT/metrics (a daemon thread).

    Raises:
        ConfigError: the port cannot be listened on (taken by another process).
    """
    try:
        start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(
            f"daemon.metrics_port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
            f"another process holds it (`ss -ltnp 'sport = :{port}'`) or set another port"
        ) from None
