"""The pass policy: after each pass over a problem, whether it gets more.

``fixed`` gives every problem the passes it was enqueued with. ``adaptive`` spends passes by
the votes: a problem whose label won ``settle_share`` of the votes ``settle_after`` passes in
a row (the same canonical answer each time) has little left to teach, since a unanimous group
has no reward spread, and its answer is stable: it is settled (``done``, the passes left
unspent). A problem whose newest vote is split (its label under ``split_share``) gets one more
pass when its passes are spent, up to ``max_passes``: there both the answer and the model can
still improve. Problems enqueued with ``fixed_passes`` are left to the fixed rule. The queue's
priorities still order the claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ttrl.config.daemon import PassesConfig


@dataclass(frozen=True)
class PassVote:
    """What the policy reads of one pass: the label's canonical key and its share."""

    label_key: str | None
    share: float


@dataclass(frozen=True)
class PassDecision:
    """``settle``: done now, the passes left unspent; ``passes_wanted``: the problem's new
    number of passes in all (None: unchanged)."""

    settle: bool = False
    passes_wanted: int | None = None


KEEP = PassDecision()


def decide(
    recent: Sequence[PassVote],
    passes_done: int,
    passes_wanted: int,
    fixed: bool,
    cfg: PassesConfig,
) -> PassDecision:
    """The decision after a pass. ``recent``: the problem's newest passes, oldest first, the
    one just voted last (its last ``settle_after`` are read); ``passes_done`` counts that one."""
    if cfg.policy == "fixed" or fixed or not recent:
        return KEEP
    if passes_done < passes_wanted and is_stable(recent, cfg):
        return PassDecision(settle=True)
    split = recent[-1].share < cfg.split_share
    if split and passes_wanted <= passes_done < cfg.max_passes:
        return PassDecision(passes_wanted=passes_done + 1)
    return KEEP


def is_stable(recent: Sequence[PassVote], cfg: PassesConfig) -> bool:
    """Whether the last ``settle_after`` passes each gave one label (not "no answer") at
    least ``settle_share`` of the votes."""
    last = recent[-cfg.settle_after :]
    key = last[-1].label_key
    return (
        len(last) == cfg.settle_after
        and key is not None
        and all(v.label_key == key and v.share >= cfg.settle_share for v in last)
    )
