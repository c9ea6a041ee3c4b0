"""The circuit breaker alone: failing prompts vs a broken engine."""

from __future__ import annotations

import pytest

from ttrl.daemon.breaker import Breaker, EngineFailure, signature


class Plain:
    """The plain prompt's sampler: works, or fails like the engine."""

    def __init__(self, fails: bool) -> None:
        self.fails, self.calls = fails, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.fails:
            raise RuntimeError("CUDA error: device-side assert triggered")


def test_errors_alike_are_one_signature() -> None:
    assert signature(RuntimeError("boom\nat line 3")) == signature(RuntimeError("boom\nelse"))
    assert signature(RuntimeError("boom")) != signature(ValueError("boom"))


def test_a_streak_trips_only_when_the_plain_prompt_fails_too() -> None:
    plain = Plain(fails=True)
    breaker = Breaker(3, plain)
    breaker.failed_alone(1, RuntimeError("nan in logits"))
    breaker.failed_alone(2, RuntimeError("nan in logits"))
    assert plain.calls == 0  # two in a row: not yet
    with pytest.raises(EngineFailure, match="3 problems in a row"):
        breaker.failed_alone(3, RuntimeError("nan in logits"))
    assert breaker.take_streak() == [1, 2] and breaker.take_streak() == []


def test_the_plain_prompt_sampling_ends_the_streak() -> None:
    breaker = Breaker(2, Plain(fails=False))
    breaker.failed_alone(1, ValueError("prompt too long"))
    breaker.failed_alone(2, ValueError("prompt too long"))  # the prompts fail, not the engine
    assert breaker.streak == []


def test_another_error_starts_another_streak_and_a_success_ends_it() -> None:
    breaker = Breaker(3, Plain(fails=True))
    breaker.failed_alone(1, RuntimeError("a"))
    breaker.failed_alone(2, RuntimeError("b"))
    assert breaker.streak == [2]
    breaker.worked()
    assert breaker.streak == [] and breaker.streak_signature is None


def test_a_whole_batch_failing_alike_trips_only_if_nothing_sampled() -> None:
    breaker = Breaker(8, Plain(fails=True))
    breaker.batch_failed(3, [RuntimeError("x")] * 2)  # one of three sampled
    breaker.batch_failed(2, [RuntimeError("x"), ValueError("y")])  # two errors
    with pytest.raises(EngineFailure, match="all 2 problems of a batch"):
        breaker.batch_failed(2, [RuntimeError("x")] * 2)
