"""The collapse guard's state and policy around the pure checks of :mod:`ttrl.daemon.guard`.

:class:`GuardKeeper` chooses the probe (canaries first, then the newest problems), keeps
the baseline (the base model's samples of the probe, measured once and stored with the
lineage), the best canary pass@1 and the count of rollbacks in a row, and says what a
check means: pass, hold or roll back. The learner acts on it
(:meth:`ttrl.daemon.learner.Learner.roll_back`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from typing import Any

from loguru import logger
from sqlalchemy import Connection, select
from sqlalchemy import Engine as SqlEngine

from ttrl.config import Settings
from ttrl.daemon import guard, metrics, model_versions
from ttrl.daemon.guard import Verdict
from ttrl.daemon.health import sd_notify
from ttrl.daemon.outages import Outages
from ttrl.daemon.serving import Serving
from ttrl.db import transaction
from ttrl.db.models import Problem

P = Problem.__table__.c


def probe_prompts(
    conn: Connection, canary_batches: Sequence[str], max_canaries: int, recent: int
) -> list[tuple[str, str | None]]:
    """The guard's probe: (prompt, reference) of up to ``max_canaries`` canaries with a
    reference answer, then (prompt, None) of the ``recent`` newest other problems."""
    out: list[tuple[str, str | None]] = []
    if canary_batches and max_canaries:
        out += [
            (row.prompt, row.reference_answer)
            for row in conn.execute(
                select(P.prompt, P.reference_answer)
                .where(P.batch.in_(list(canary_batches)), P.reference_answer.is_not(None))
                .order_by(P.id)
                .limit(max_canaries)
            )
        ]
    others = select(P.prompt).where(P.status != "failed").order_by(P.id.desc()).limit(recent)
    if canary_batches:
        others = others.where(P.batch.not_in(list(canary_batches)))
    out += [(prompt, None) for prompt in conn.execute(others).scalars()]
    return out


def stats_to_json(stats: guard.ProbeStats) -> dict[str, Any]:
    """``stats`` as JSON can hold them: a number that is not finite (the NLL without
    logprobs is NaN) as null."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in asdict(stats).items()
    }


def stats_from_json(data: dict[str, Any]) -> guard.ProbeStats:
    """The stats :func:`stats_to_json` stored; KeyError when one is missing."""
    values = {f.name: data[f.name] for f in fields(guard.ProbeStats)}
    if values["nll"] is None:
        values["nll"] = math.nan
    return guard.ProbeStats(**values)


def probe_settings(cfg: Settings) -> dict[str, Any]:
    """What decides how the probe samples: a stored baseline measured with other settings
    is no baseline for these."""
    g, sampling = cfg.guard, cfg.engine.sampling
    return {
        "probe_prompts": g.probe_prompts,
        "probe_samples": g.probe_samples,
        "max_canaries": g.max_canaries,
        "canary_batches": list(g.canary_batches),
        "seed": g.seed,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_new_tokens": sampling.max_new_tokens,
    }


class GuardKeeper:
    """The guard of one learner; ``serving`` is the version it checks."""

    def __init__(self, cfg: Settings, db: SqlEngine, serving: Serving, outages: Outages) -> None:
        self.cfg = cfg.guard
        self.sampling = cfg.engine.sampling
        self.settings = probe_settings(cfg)
        self.db = db
        self.serving = serving
        self.outages = outages
        self.probe: list[tuple[str, str | None]] = []
        self.baseline: guard.ProbeStats | None = None
        self.best_canary: float | None = None
        self.rollbacks = 0  # in a row
        self.held = False  # updates stopped

    def probe_stats(self) -> guard.ProbeStats | None:
        """Sample the probe with the serving weights; None when there is nothing to probe
        yet or sampling failed (the check is then skipped, and logged)."""
        engine = self.serving.engine
        assert engine is not None
        if not self._probe_chosen():
            return None
        sampling = replace(self.sampling, seed=self.cfg.seed, logprobs=True)
        try:
            groups = engine.generate([p for p, _ in self.probe], self.cfg.probe_samples, sampling)
        except (ValueError, RuntimeError) as exc:
            logger.error("guard probe failed ({}); this version is not checked", exc)
            return None
        return guard.probe_stats(groups, [ref for _, ref in self.probe])

    def _probe_chosen(self) -> bool:
        """Choose the probe once (canaries, then the newest problems); False while there
        is nothing to probe."""
        if not self.probe:
            with transaction(self.db, write=False) as conn:
                self.probe = probe_prompts(
                    conn, self.cfg.canary_batches, self.cfg.max_canaries, self.cfg.probe_prompts
                )
        return bool(self.probe)

    def before_update(self) -> None:
        """Before the first update: the probe and baseline stored with the lineage, if any
        were measured; canaries enqueued since join the probe; a baseline is measured when
        there is none."""
        why = "no baseline is stored"
        if self.baseline is None and not self.probe:
            why = self._resume_stored() or why
        if self._refresh_canaries():
            why = "the probe's canaries changed"
        if self.baseline is None:
            self._measure_baseline(why)

    def _resume_stored(self) -> str | None:
        """A restarted daemon compares its versions with the baseline measured before (the
        base model's, as a rule), not with the sharpened version it resumed. Returns why
        a stored one cannot serve (None: resumed, or none stored)."""
        with transaction(self.db, write=False) as conn:
            stored = model_versions.stored_baseline(conn)
        if stored is None:
            return None
        if stored.settings != self.settings:
            changed = sorted(k for k in self.settings if stored.settings.get(k) != self.settings[k])
            return f"the probe's settings changed since it was measured ({', '.join(changed)})"
        try:
            baseline = stats_from_json(stored.stats)
        except (KeyError, TypeError, ValueError) as exc:
            return f"the stored baseline is unreadable ({type(exc).__name__}: {exc})"
        self.probe, self.baseline = stored.probe, baseline
        self.best_canary = baseline.canary_pass1
        logger.info(
            "guard: the stored probe ({} prompts) and the baseline of version {}",
            len(self.probe),
            stored.version,
        )
        return None

    def _refresh_canaries(self) -> bool:
        """Canaries enqueued since the probe was chosen join it at the next update. The
        probe changed, so the baseline (and the best canary pass@1) is measured again
        before this update's version is compared with it. Returns whether it changed."""
        if not self.probe:
            return False  # chosen (canaries included) at the first probe
        with transaction(self.db, write=False) as conn:
            canaries = probe_prompts(conn, self.cfg.canary_batches, self.cfg.max_canaries, 0)
        known = [p for p in self.probe if p[1] is not None]
        if canaries == known:
            return False
        logger.info(
            "guard: the probe now holds {} canaries ({} before); measuring the baseline again",
            len(canaries),
            len(known),
        )
        self.probe = canaries + [p for p in self.probe if p[1] is None]
        self.baseline = None
        return True

    def _measure_baseline(self, why: str) -> None:
        """Sample the probe with the serving version and store it as the baseline, once:
        the base model's at version 0. Where the serving version is later (a probe that
        changed after training began, a database from before baselines were stored) that
        version is the baseline: the base weights are never swapped into the serving
        engine to measure it. ``why`` it is measured, logged for a later version."""
        stats = self.probe_stats()
        if stats is None:
            return  # nothing to probe yet, or the probe failed: measured at the next update
        version = self.serving.version
        if version:
            logger.warning("guard: {}; version {} is the baseline from now on", why, version)
        self.baseline, self.best_canary = stats, stats.canary_pass1
        probe, settings = list(self.probe), self.settings
        self.outages.store(
            "the guard's baseline",
            lambda c: model_versions.store_baseline(
                c, probe, settings, stats_to_json(stats), version
            ),
        )

    def check(self, stats: guard.ProbeStats, kl: float | None) -> list[guard.Decision]:
        """Every signal of ``stats`` against the baseline (none before there is one)."""
        if self.baseline is None:
            return []
        decisions = guard.check(stats, self.baseline, self.best_canary, kl, self.cfg)
        for d in decisions:
            if d.tripped:
                metrics.GUARD_TRIPS.labels(d.signal).inc()
                logger.warning(
                    "guard: {} = {:.4g} (threshold {:.4g}) -> {}",
                    d.signal,
                    d.value,
                    d.threshold,
                    d.action,
                )
        return decisions

    def passed(self, stats: guard.ProbeStats | None) -> None:
        """A new version serves; ``stats`` its probe (None: not probed)."""
        if stats is None:
            return  # "in a row" counts probed versions: unchecked ones pass nothing
        if stats.canary_pass1 is not None:
            self.best_canary = max(self.best_canary or 0.0, stats.canary_pass1)
        self.rollbacks = 0

    def rolled_back(self, to: int) -> None:
        """A rollback happened; ``max_rollbacks`` in a row hold the updates."""
        self.rollbacks += 1
        if self.rollbacks >= self.cfg.max_rollbacks:
            logger.error("guard: {} rollbacks in a row", self.rollbacks)
            self.hold(to)

    def hold(self, version: int) -> None:
        self.held = True
        logger.error(
            "guard: updates held at version {}; serving it. Inspect guard_decisions, then "
            "restart the service to resume training",
            version,
        )
        sd_notify(status=f"updates held by the collapse guard at version {version}")

    def scheduled(self) -> tuple[Verdict, list[guard.Decision]]:
        """The periodic check of the serving version (``guard.every_s``): its verdict and
        decisions (none before the first update: nothing to compare with)."""
        if self.baseline is None:
            return None, []
        stats = self.probe_stats()
        if stats is None:
            return None, []
        decisions = self.check(stats, None)
        return guard.verdict(decisions), decisions
