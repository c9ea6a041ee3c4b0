"""Shared set-up of the answers tests: one warm worker pool with a short time bound."""

import pytest

from ttrl.answers import AnswersConfig, configure, metrics, warm_up

HOSTILE_TIMEOUT_S = 0.5


@pytest.fixture(scope="package", autouse=True)
def answers_pool():
    """A pool with a 0.5 s bound (hostile inputs cost that, not the 1 s default)."""
    config = AnswersConfig(timeout_s=HOSTILE_TIMEOUT_S)
    configure(config)
    warm_up()
    metrics.reset()
    yield config
    configure(AnswersConfig())
