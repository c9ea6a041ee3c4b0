"""Configuration of answer extraction, canonicalisation and voting.

Kept free of heavy imports: the lead's config tree mounts `AnswersConfig` at `answers:`.
"""

from pydantic import BaseModel, ConfigDict, Field


class AnswersConfig(BaseModel):
    """Bounds and switches of the answers package.

    Every call into sympy / math-verify runs in a worker subprocess that is killed after
    `timeout_s`; the answer then keeps its cleaned-string key (counted in
    `ttrl.answers.metrics`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(1.0, gt=0, description="Bound on any sympy/math-verify call.")
    symbolic: bool = Field(
        True,
        description="Use sympy/math-verify for answers the exact fast path cannot read. "
        "False: such answers keep their cleaned-string key and are never merged.",
    )
    max_symbolic_chars: int = Field(
        400,
        ge=1,
        description="Cleaned answers longer than this skip sympy and keep their string key.",
    )
    max_merge_checks: int = Field(
        64,
        ge=0,
        description="At most this many pairwise verify calls per vote (largest clusters first).",
    )
    workers: int = Field(1, ge=1, description="Size of the sympy worker-process pool.")
    worker_memory_mb: int = Field(
        2048, ge=256, description="Address-space limit of each worker process (RLIMIT_AS)."
    )
    worker_start_timeout_s: float = Field(
        60.0, gt=0, description="Bound on a worker's start-up (imports), not counted as a timeout."
    )
    cache_size: int = Field(
        65536, ge=0, description="Entries in the memo of symbolic results (per process)."
    )
