"""Final answers of completions: extract, canonicalise, compare, majority-vote, score.

>>> from ttrl.answers import extract, vote
>>> v = vote([extract(t) for t in completions])
>>> v.label, v.share, v.rewards
"""

from ttrl.answers import metrics
from ttrl.answers.bounded import configure, get_config, pool
from ttrl.answers.canonical import canonical
from ttrl.answers.config import AnswersConfig
from ttrl.answers.extract import extract
from ttrl.answers.keys import Key
from ttrl.answers.scoring import Score, score
from ttrl.answers.vote import Vote, equivalent, pooled_vote, vote


def warm_up() -> None:
    """Start the sympy workers now (daemon start-up) instead of on the first odd answer."""
    pool().warm_up()


__all__ = [
    "AnswersConfig",
    "Key",
    "Score",
    "Vote",
    "canonical",
    "configure",
    "equivalent",
    "extract",
    "get_config",
    "metrics",
    "pooled_vote",
    "score",
    "vote",
    "warm_up",
]
