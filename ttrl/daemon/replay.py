"""The selective sample buffer (Skywork R1V2): replay groups that carried signal.

GRPO's advantages vanish in a group whose rewards are all equal, so an update of mostly
unanimous votes trains on little. The buffer keeps the groups an update trained on that had
reward spread (and a label share the trainer accepts), and lends them to a later update whose
fresh informative groups are fewer than ``daemon.replay.fill_to``. Bounds: at most
``max_groups`` groups; each replayed at most ``max_replays`` times; only rollouts sampled by a
version within ``daemon.max_staleness`` of the one serving (the trainer's importance-sampling
correction weighs them by the engine's logprobs, as it does fresh stale rollouts); never a
group twice in one update; nothing beyond ``daemon.max_groups_per_update`` in an update; and
nothing trained into a version the guard rolled back past (at its probe or a scheduled
check). The buffer lives in the learner's memory: a restart starts it empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ttrl.config.daemon import ReplayConfig
from ttrl.rl.batch import RolloutGroup, is_low_share, is_uniform


def is_informative(group: RolloutGroup, min_label_share: float, drop_uniform: bool = True) -> bool:
    """Whether the trainer would learn from the group: a label share it accepts and, when it
    drops uniform groups (``rl.drop_uniform_groups``), reward spread. Judged on the whole
    group: the trainer's ``rl.train_samples`` may still down-sample a spread group to a
    uniform one."""
    return (
        bool(group.rollouts)
        and not (drop_uniform and is_uniform(group))
        and not is_low_share(group, min_label_share)
    )


def sampled_by(group: RolloutGroup) -> int:
    """The oldest model version that sampled a rollout of the group."""
    return min(r.model_version for r in group.rollouts)


def replay_metrics(
    replayed: Sequence[RolloutGroup], groups: int, version: int
) -> dict[str, float | int | None]:
    """The version's replay figures: groups replayed, their share of the ``groups`` the
    update was given, and the most versions between a replayed rollout's sampling and
    ``version`` (None without replays)."""
    return {
        "replayed_groups": len(replayed),
        "replay_share": len(replayed) / groups if groups else 0.0,
        "replay_staleness": (version - min(sampled_by(g) for g in replayed) if replayed else None),
    }


@dataclass
class _Kept:
    group: RolloutGroup
    trained_in: list[int]  # the versions it was trained into, first as a fresh group

    @property
    def replays(self) -> int:
        return len(self.trained_in) - 1


class SampleBuffer:
    """Informative groups of past updates, keyed by ``RolloutGroup.problem_id`` (the daemon
    passes the vote id there: one group per vote)."""

    def __init__(
        self, cfg: ReplayConfig, min_label_share: float = 0.0, drop_uniform: bool = True
    ) -> None:
        self.cfg = cfg
        self.min_label_share = min_label_share
        self.drop_uniform = drop_uniform
        self._kept: dict[int | str, _Kept] = {}

    def _informative(self, group: RolloutGroup) -> bool:
        return is_informative(group, self.min_label_share, self.drop_uniform)

    def __len__(self) -> int:
        return len(self._kept)

    def fill(
        self, fresh: Sequence[RolloutGroup], want: int, min_version: int, most: int
    ) -> list[RolloutGroup]:
        """The replays for an update of ``fresh`` groups: as many as ``want`` minus the fresh
        informative ones and at most ``most`` minus the fresh ones (the update's cap), the
        most recently sampled first, none of the fresh groups, none sampled before
        ``min_version`` (those are dropped from the buffer)."""
        for key in [k for k, kept in self._kept.items() if sampled_by(kept.group) < min_version]:
            del self._kept[key]
        need = min(want - sum(map(self._informative, fresh)), most - len(fresh))
        if need <= 0:
            return []
        fresh_ids = {g.problem_id for g in fresh}
        candidates = sorted(
            (kept for key, kept in self._kept.items() if key not in fresh_ids),
            key=lambda kept: (-sampled_by(kept.group), kept.replays),
        )
        return [kept.group for kept in candidates[:need]]

    def trained(
        self, fresh: Sequence[RolloutGroup], replayed: Sequence[RolloutGroup], version: int
    ) -> None:
        """After an update of ``fresh`` + ``replayed`` groups made ``version``: the fresh
        informative groups join the buffer, the replays count one more use (and leave it
        after ``max_replays``), the oldest sampled leave beyond ``max_groups``."""
        for group in replayed:
            entry = self._kept.get(group.problem_id)
            if entry is not None:
                entry.trained_in.append(version)
                if entry.replays >= self.cfg.max_replays:
                    del self._kept[group.problem_id]
        for group in fresh:
            if self._informative(group):
                self._kept[group.problem_id] = _Kept(group, [version])
        while len(self._kept) > self.cfg.max_groups:
            oldest = min(self._kept, key=lambda k: sampled_by(self._kept[k].group))
            del self._kept[oldest]

    def forget_after(self, version: int) -> None:
        """The guard rolled back to ``version``: every group trained into a later version
        (the one refused, and any unprobed ones between) leaves the buffer."""
        for key in [k for k, kept in self._kept.items() if max(kept.trained_in) > version]:
            del self._kept[key]
