"""What this process serves: a model version and the engine serving it."""

from __future__ import annotations

from dataclasses import dataclass

from ttrl.daemon import metrics
from ttrl.engines import Engine


@dataclass
class Serving:
    """The version served, changed by the learner (updates, rollbacks) or, on a rollout
    worker, by following the learner; ``engine`` is None on a learner without the guard."""

    engine: Engine | None
    version: int

    def now(self, version: int) -> None:
        """``version`` serves from now on."""
        self.version = version
        metrics.MODEL_VERSION.set(version)
