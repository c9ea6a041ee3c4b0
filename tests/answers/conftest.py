"""Shared set-up of the answers tests: one warm worker pool with a short time bound, and a
patient one for the modules about what the answers are."""

import pytest

from ttrl.answers import AnswersConfig, configure, get_config, metrics, warm_up

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


@pytest.fixture(scope="module")
def patient_pool():
    """The daemon's default 1 s bound, with room for a loaded CI machine: for tests about
    what the answers are, not about the bound (tests/answers/test_bounded.py)."""
    previous = get_config()
    configure(AnswersConfig(timeout_s=5.0))
    warm_up()
    yield
    configure(previous)
    warm_up()
