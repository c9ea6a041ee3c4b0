"""The circuit breaker: tells a broken engine from prompts that fail.

When every problem of a batch of two or more fails alone with the same engine error, or
``daemon.breaker_failures`` problems in a row do, and a plain prompt fails too, the engine
is what is broken: :class:`EngineFailure` is raised with nothing recorded against those
problems (the attempts the streak counted are refunded), and ``ttrl serve`` exits
:data:`EXIT_ENGINE_FAILURE`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loguru import logger


class EngineFailure(RuntimeError):
    """The engine failed systemically (the circuit breaker tripped); the message says how."""


# `ttrl serve` exits with this when the circuit breaker tripped: the engine failed every
# generation the same way. systemd does not restart it (RestartPreventExitStatus).
EXIT_ENGINE_FAILURE = 79

# The breaker's control: a prompt any working engine samples.
PLAIN_PROMPT = "What is 1 + 1?"


def signature(exc: BaseException) -> str:
    """What makes two engine errors "the same": type and first line of the message."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


class Breaker:
    """The streak of problems failed in a row with the same engine error.

    ``sample_plain`` samples :data:`PLAIN_PROMPT` once (raising as the engine does);
    ``threshold`` is ``daemon.breaker_failures``."""

    def __init__(self, threshold: int, sample_plain: Callable[[], object]) -> None:
        self.threshold = threshold
        self.sample_plain = sample_plain
        self.streak: list[int] = []  # problem ids
        self.streak_signature: str | None = None

    def worked(self) -> None:
        """The engine sampled: the streak ends."""
        self.streak, self.streak_signature = [], None

    def failed_alone(self, problem_id: int, exc: BaseException) -> None:
        """One problem failed alone; raises :class:`EngineFailure` when it makes
        ``threshold`` in a row with the same error and the plain prompt fails too (then
        this one is not to be recorded). Otherwise the caller fails the problem."""
        sig = signature(exc)
        if sig != self.streak_signature:
            self.streak, self.streak_signature = [], sig
        if len(self.streak) + 1 < self.threshold:
            self.streak.append(problem_id)
        elif self.engine_broken():
            raise EngineFailure(
                f"{len(self.streak) + 1} problems in a row failed with the same engine error, "
                f"and so did a plain prompt: {sig}"
            )
        else:
            self.worked()  # the engine samples: these prompts are what fails

    def batch_failed(self, size: int, errors: Sequence[BaseException]) -> None:
        """Every problem of a batch of ``size`` failed alone with ``errors``: raises
        :class:`EngineFailure` when they are all alike and the plain prompt fails too."""
        signatures = {signature(exc) for exc in errors}
        if len(errors) == size and len(signatures) == 1 and self.engine_broken():
            raise EngineFailure(
                f"all {size} problems of a batch failed alone with the same engine "
                f"error, and so did a plain prompt: {signatures.pop()}"
            )

    def engine_broken(self) -> bool:
        """The control: whether the engine fails a plain prompt too. Failures alike may be
        the prompts' own (a batch of duplicates, all too long), of any error type; failing
        :data:`PLAIN_PROMPT` as well, the engine is what is broken."""
        try:
            self.sample_plain()
        except (ValueError, RuntimeError) as exc:
            logger.error("circuit breaker: the plain prompt {!r} fails too: {}", PLAIN_PROMPT, exc)
            return True
        logger.warning("circuit breaker: the engine samples a plain prompt; failing the problems")
        return False

    def take_streak(self) -> list[int]:
        """The problems whose attempts the streak counted (to refund), clearing it."""
        taken, self.streak = self.streak, []
        return taken
