"""The answering pipeline: claim -> sample -> vote -> write.

A batch is sampled while the previous batch's tally runs on a thread; the previous batch
is then written in one transaction (a savepoint a problem), so voting overlaps sampling.
:class:`Answerer` owns the claims in flight (up to two batches) and gives them back to the
queue when the daemon stops."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from loguru import logger
from sqlalchemy import Connection
from sqlalchemy import Engine as SqlEngine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ttrl.config import Settings
from ttrl.crashpoints import crash_point
from ttrl.daemon import metrics, passes, votes, workers
from ttrl.daemon.breaker import PLAIN_PROMPT, Breaker
from ttrl.daemon.health import Progress
from ttrl.daemon.outages import Outages
from ttrl.daemon.passes import PassVote
from ttrl.daemon.records import VoteRecord
from ttrl.daemon.voting import Tally, tally, vote_record
from ttrl.db import queue, transaction
from ttrl.db.queue import ClaimedProblem, LeaseLost
from ttrl.engines import Completion, Engine

Sampled = list[tuple[ClaimedProblem, list[Completion]]]


class Answerer:
    """Answers claimed problems with ``engine`` for worker ``worker_id``."""

    def __init__(
        self,
        cfg: Settings,
        db: SqlEngine,
        worker_id: str,
        engine: Engine,
        outages: Outages,
        progress: Progress,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.worker_id = worker_id
        self.engine = engine
        self.outages = outages
        self.progress = progress
        self.in_flight: list[int] = []  # claimed, not yet written: up to two batches
        # The batch sampled last, its tally running on `voter` while the next batch samples.
        self.pending: tuple[Sampled, Future[list[Tally]]] | None = None
        self.voter = ThreadPoolExecutor(1, thread_name_prefix="voting")
        plain_tokens = min(8, cfg.engine.sampling.max_new_tokens)
        self.breaker = Breaker(
            cfg.daemon.breaker_failures, lambda: self.sample([PLAIN_PROMPT], 1, plain_tokens)
        )

    def claim_and_answer(self) -> bool:
        """Claim a batch and answer it (writing the previous one); with nothing to claim,
        write the pending batch now. Returns whether anything was claimed."""
        with transaction(self.db) as conn:
            claimed = queue.claim(
                conn, self.cfg.queue.claim_batch, self.worker_id, self.cfg.queue.lease_s
            )
            # A claimed pass's earlier passes are all written: a problem is in one batch.
            earlier = votes.recent_answers(
                conn, [c.id for c in claimed], self.cfg.daemon.vote_window - 1
            )
        if not claimed:
            self.flush()  # nothing to overlap with: write the last batch now
            return False
        self.in_flight += [c.id for c in claimed]
        sampled = self.generate(claimed)
        self.progress.touch()
        crash_point("sampled")
        self.flush()
        counting = self.voter.submit(
            lambda: [tally(samples, earlier.get(c.id, ())) for c, samples in sampled]
        )
        self.pending = (sampled, counting)
        return True

    def pending_groups(self) -> int:
        """Problems sampled whose votes are not written yet."""
        return len(self.pending[0]) if self.pending else 0

    def keep_pending_claims(self) -> None:
        """After the database failed a claim: only the pending batch is still in memory;
        the other claims are not renewed (their leases expire)."""
        keep = {c.id for c, _ in self.pending[0]} if self.pending else set()
        self.in_flight = [i for i in self.in_flight if i in keep]

    def generate(self, claimed: list[ClaimedProblem]) -> Sampled:
        """Sample every claimed problem. When the batch fails, each problem is retried alone
        and the one that fails by itself is failed in the queue (with the reason), so one
        bad prompt never takes the others down; the :class:`Breaker` tells a broken engine
        from failing prompts (raising ``EngineFailure`` with nothing recorded)."""
        try:
            out = self.sample([c.prompt for c in claimed])
            self.breaker.worked()
            return list(zip(claimed, out, strict=True))
        except (ValueError, RuntimeError) as exc:
            if len(claimed) == 1:
                self._failed_alone(claimed[0], exc)
                return []
        sampled: Sampled = []
        failed: list[tuple[ClaimedProblem, Exception]] = []
        for c in claimed:
            try:
                sampled.append((c, self.sample([c.prompt])[0]))
                self.breaker.worked()
            except (ValueError, RuntimeError) as error:
                failed.append((c, error))
        self.breaker.batch_failed(len(claimed), [e for _, e in failed])
        for c, reason in failed:
            self._failed_alone(c, reason)
        return sampled

    def sample(
        self, prompts: list[str], n: int | None = None, max_new_tokens: int = 0
    ) -> list[list[Completion]]:
        """``n`` (default ``daemon.votes``) samples of each prompt with the configured
        sampling, the engine's logprobs included when the trainer corrects for the engine
        (they are its behaviour policy); ``max_new_tokens`` caps the length when set."""
        sampling = replace(self.cfg.engine.sampling, logprobs=self.cfg.rl.is_correction)
        if max_new_tokens:
            sampling = replace(sampling, max_new_tokens=max_new_tokens)
        try:
            return self.engine.generate(prompts, n or self.cfg.daemon.votes, sampling)
        except (ValueError, RuntimeError):
            metrics.GENERATION_FAILURES.inc()
            raise

    def _failed_alone(self, problem: ClaimedProblem, exc: BaseException) -> None:
        self.breaker.failed_alone(problem.id, exc)
        self.fail(problem.id, f"generation failed: {exc}")

    def fail(self, problem_id: int, reason: str) -> None:
        """Record a failed attempt (requeued, or failed for good after ``max_attempts``),
        through database outages. A lease lost meanwhile leaves the problem to its new
        owner."""
        logger.error("problem {}: {}", problem_id, reason)
        max_attempts = self.cfg.queue.max_attempts
        try:
            status = self.outages.store(
                f"the failure of problem {problem_id}",
                lambda conn: queue.fail(conn, problem_id, self.worker_id, reason, max_attempts),
            )
            metrics.PROBLEM_FAILURES.labels("failed" if status == "failed" else "requeued").inc()
        except LeaseLost as exc:
            logger.warning("problem {}: failure not recorded: {}", problem_id, exc)
        self.in_flight.remove(problem_id)

    def refund_streak(self) -> int:
        """The breaker tripped: take back the attempts its streak counted; returns how many."""
        refunded = self.breaker.take_streak()
        if refunded:
            self.outages.store("the refund of attempts", lambda conn: queue.refund(conn, refunded))
        return len(refunded)

    def flush(self) -> None:
        """Write the pending batch's votes in one transaction. The samples stay in memory
        through a database outage and are written when it ends."""
        if self.pending is None:
            return
        sampled, counting = self.pending
        self.pending = None  # a tally that failed is not retried forever
        tallies = counting.result()
        records = self.outages.store(
            "the votes of the batch", lambda conn: self.write_votes(conn, sampled, tallies)
        )
        written = {c.id for c, _ in sampled}
        self.in_flight = [i for i in self.in_flight if i not in written]
        for record, settled in records:
            metrics.PROBLEMS_VOTED.inc()
            metrics.PROBLEMS_SETTLED.inc(settled)
            metrics.ROLLOUTS.inc(len(record.rollouts))
            metrics.VOTE_SHARE.set(record.share)

    def write_votes(
        self, conn: Connection, sampled: Sampled, tallies: list[Tally]
    ) -> list[tuple[VoteRecord, bool]]:
        """One commit for the batch; a savepoint per problem, so a problem whose lease was
        lost (another worker owns the pass now, its vote stands) drops alone. Returns the
        votes written, each with whether the pass policy settled its problem."""
        records = []
        ids = [c.id for c, _ in sampled]
        references = votes.reference_answers(conn, ids)
        policy = self.cfg.daemon.passes
        adaptive = policy.policy == "adaptive"
        history = votes.recent_votes(conn, ids, policy.settle_after - 1) if adaptive else {}
        for (problem, samples), counted in zip(sampled, tallies, strict=True):
            record = vote_record(
                problem.id, problem.passes_done, samples, references.get(problem.id), counted
            )
            recent = [*history.get(problem.id, []), PassVote(record.label_key, record.share)]
            # Canaries keep their passes: per-version canary accuracy needs their votes.
            fixed = problem.fixed_passes or problem.batch in self.cfg.guard.canary_batches
            decision = passes.decide(
                recent, problem.passes_done + 1, problem.passes_wanted, fixed, policy
            )
            try:
                with conn.begin_nested():
                    votes.record_vote(conn, record, self.worker_id)
                    queue.complete_pass(
                        conn,
                        problem.id,
                        self.worker_id,
                        record.label,
                        record.share,
                        record.model_version,
                        settle=decision.settle,
                        passes_wanted=decision.passes_wanted,
                    )
            except (LeaseLost, IntegrityError) as exc:
                logger.warning("problem {}: vote dropped: {}", problem.id, exc)
                continue
            records.append((record, decision.settle))
        crash_point("vote_written")
        return records

    def renew_leases(self) -> None:
        """Scheduled: renew the leases of the claims in flight."""
        ids = list(self.in_flight)
        if ids:
            with transaction(self.db) as conn:
                kept = queue.renew(conn, ids, self.worker_id, self.cfg.queue.lease_s)
            if len(kept) < len(ids):
                logger.warning("lost the lease of problems {}", sorted(set(ids) - kept))


def release_claims(
    db: SqlEngine,
    worker_id: str,
    claims: list[int],
    worker_state: str = "stopped",
    reason: str | None = None,
) -> int | None:
    """Give unfinished ``claims`` back to the queue and record the worker's state; returns
    how many went back, None when the database is unreachable (their leases expire)."""
    try:
        with transaction(db) as conn:
            released = queue.release(conn, claims, worker_id)
            workers.heartbeat(conn, worker_id, state=worker_state, reason=reason)
    except SQLAlchemyError as exc:
        logger.error("could not release claims {} ({}); their leases will expire", claims, exc)
        return None
    metrics.CLAIMS_RELEASED.inc(released)
    return released
