"""The collapse guard: is a new model version still fit to serve and to learn from?

Label-free RL rises and then falls once the model's confidence stops tracking correctness
(Zuo et al. 2025 discuss it; the tiny model shows it within minutes at a high learning
rate). Before a new version answers anything (every ``guard.every_updates``-th version),
the guard samples a fixed probe with it:
recent prompts of the queue plus the canaries (problems with reference answers in a
canary batch, never trained on). From those samples it reads

- vote-share saturation: the mean majority share goes to 1 (every sample agrees);
- entropy drop: the per-token negative log-likelihood of the samples (a Monte Carlo
  estimate of the policy's entropy) falls below a fraction of the baseline's;
- KL from the reference model beyond a bound (the trainer's, when it keeps a reference);
- completion length collapse or blow-up against the baseline;
- a rising share of samples with no final answer;
- canary pass@1 falling below the best version's.

Each signal is a :class:`Decision` row; the most severe action among the tripped ones is
the verdict (``alert`` < ``hold`` < ``rollback``). The baseline is the base model's probe,
measured once and stored with the lineage (:mod:`ttrl.daemon.guarding`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

from ttrl.answers import extract, score, vote
from ttrl.config.daemon import GuardAction, GuardConfig
from ttrl.engines.base import Completion

Verdict = GuardAction | None
SEVERITY: tuple[GuardAction, ...] = ("alert", "hold", "rollback")  # least severe first


@dataclass(frozen=True)
class ProbeStats:
    """What one version's samples of the probe look like."""

    vote_share: float  # mean majority share over prompts
    distinct: float  # mean number of distinct answers per prompt
    no_answer: float  # share of samples without a final answer
    tokens: float  # mean completion length in tokens
    nll: float  # mean negative log-likelihood per sampled token (nan without logprobs)
    canary_pass1: float | None  # share of canary samples with the reference answer


@dataclass(frozen=True)
class Decision:
    """One signal checked for one version: a row of ``guard_decisions``."""

    signal: str
    value: float
    threshold: float | None
    tripped: bool
    action: str  # "none" when not tripped


def probe_stats(
    groups: Sequence[Sequence[Completion]], references: Sequence[str | None]
) -> ProbeStats:
    """Summarise the samples of every probe prompt; ``references`` are None except for
    canaries."""
    if len(groups) != len(references) or not groups:
        raise ValueError("probe_stats needs one reference (or None) per non-empty group")
    shares: list[float] = []
    distinct: list[int] = []
    canary: list[bool] = []
    no_answer = tokens = n_samples = 0
    nll_sum, nll_tokens = 0.0, 0
    for samples, reference in zip(groups, references, strict=True):
        answers = [extract(s.text) for s in samples]
        v = vote(answers)
        shares.append(v.share)
        distinct.append(v.n_distinct)
        no_answer += sum(a is None for a in answers)
        for s in samples:
            tokens += len(s.token_ids)
            if s.logprobs:
                nll_sum -= sum(s.logprobs)
                nll_tokens += len(s.logprobs)
        n_samples += len(samples)
        if reference is not None:
            canary.extend(score(v, answers, reference).correct)
    return ProbeStats(
        vote_share=fmean(shares),
        distinct=fmean(distinct),
        no_answer=no_answer / n_samples,
        tokens=tokens / n_samples,
        nll=nll_sum / nll_tokens if nll_tokens else math.nan,
        canary_pass1=fmean(canary) if canary else None,
    )


def check(
    stats: ProbeStats,
    baseline: ProbeStats,
    best_canary: float | None,
    kl: float | None,
    cfg: GuardConfig,
) -> list[Decision]:
    """Every signal of ``stats`` against ``baseline`` and the thresholds of ``cfg``."""

    def decision(signal: str, value: float, threshold: float, tripped: bool) -> Decision:
        action = cfg.saturation_action if signal == "vote_share" else cfg.action
        return Decision(signal, value, threshold, tripped, action if tripped else "none")

    out = [decision("vote_share", stats.vote_share, cfg.max_vote_share,
                    stats.vote_share >= cfg.max_vote_share)]  # fmt: skip
    if baseline.nll > 0 and not math.isnan(stats.nll):
        ratio = stats.nll / baseline.nll
        out.append(decision("entropy_ratio", ratio, cfg.min_entropy_ratio,
                            ratio < cfg.min_entropy_ratio))  # fmt: skip
    if cfg.max_kl is not None and kl is not None and not math.isnan(kl):
        out.append(decision("kl", kl, cfg.max_kl, kl > cfg.max_kl))
    if baseline.tokens > 0:
        ratio = stats.tokens / baseline.tokens
        bound = cfg.min_length_ratio if ratio < 1 else cfg.max_length_ratio
        tripped = not cfg.min_length_ratio <= ratio <= cfg.max_length_ratio
        out.append(decision("length_ratio", ratio, bound, tripped))
    rise = stats.no_answer - baseline.no_answer
    out.append(decision("no_answer_rise", rise, cfg.max_no_answer_rise,
                        rise > cfg.max_no_answer_rise))  # fmt: skip
    if stats.canary_pass1 is not None:
        best = max(best_canary or 0.0, baseline.canary_pass1 or 0.0)
        drop = best - stats.canary_pass1
        out.append(decision("canary_drop", drop, cfg.max_canary_drop,
                            drop > cfg.max_canary_drop))  # fmt: skip
    return out


def verdict(decisions: Sequence[Decision]) -> Verdict:
    """The most severe action among the tripped signals; None when none tripped."""
    tripped = {d.action for d in decisions if d.tripped}
    return next((action for action in reversed(SEVERITY) if action in tripped), None)
