"""The problem queue: every state transition of a problem, each one SQL statement, here only.

States and transitions::

    queued --claim--> claimed --complete_pass--> queued (more passes wanted) | done
                      claimed --complete_pass(settle)--> done, settled (the pass policy)
                      claimed --fail / reap-----> queued (attempts left)     | failed
                      claimed --release-------->  queued (attempt not counted)
    failed  --requeue------------------------------> queued (fresh attempts; ``ttrl requeue``)
    done    --requeue(status="done")---------------> queued (one more pass; not settled)
    queued | failed --refund-----------------------> queued (the engine's fault: attempt back)

A claim is a lease: ``claimed_by`` owns the problem until ``lease_until``; ``renew`` extends it,
``reap`` returns expired leases to the queue. Transitions by a worker that no longer holds the
lease raise :class:`LeaseLost` and change nothing. Claim order: priority (high first), then
first in, first out by ``updated_at``, which for a queued problem is when it (re-)entered the
queue: a problem back for its next pass, a retry or a reaped lease goes to the back.
Every function takes a Connection inside the caller's transaction (``ttrl.db.transaction``),
so the daemon can advance a problem in the same transaction that stores its vote.

Modules: ``problems`` (what may be stored), ``leases`` (claim, renew, release, reap),
``passes`` (complete_pass, fail), ``admin`` (enqueue, requeue, refund, depth).
"""

from ttrl.db.queue.admin import (
    REQUEUABLE,
    EnqueueResult,
    depth,
    enqueue,
    refund,
    requeue,
    requeue_failed,
)
from ttrl.db.queue.leases import ClaimedProblem, LeaseLost, claim, reap, release, renew
from ttrl.db.queue.passes import complete_pass, fail
from ttrl.db.queue.problems import (
    INT32,
    MAX_NAME_CHARS,
    InvalidProblem,
    NewProblem,
    problem_defect,
    text_defect,
)

__all__ = [
    "INT32",
    "MAX_NAME_CHARS",
    "REQUEUABLE",
    "ClaimedProblem",
    "EnqueueResult",
    "InvalidProblem",
    "LeaseLost",
    "NewProblem",
    "claim",
    "complete_pass",
    "depth",
    "enqueue",
    "fail",
    "problem_defect",
    "reap",
    "refund",
    "release",
    "renew",
    "requeue",
    "requeue_failed",
    "text_defect",
]
