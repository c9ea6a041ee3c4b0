"""The selective sample buffer's bounds: size, staleness, replays, one use per update, and
nothing from an update the guard rolled back."""

from __future__ import annotations

from ttrl.daemon.config import ReplayConfig
from ttrl.daemon.replay import SampleBuffer, is_informative, replay_metrics
from ttrl.rl.batch import Rollout, RolloutGroup


def group(vote_id: int, version: int, rewards: tuple[float, ...] = (1, 0, 1, 0), share=0.5):
    rollouts = [Rollout([1, 2], [3, 4], r, version) for r in rewards]
    return RolloutGroup(vote_id, rollouts, label_share=share)


def uniform(vote_id: int, version: int) -> RolloutGroup:
    return group(vote_id, version, (1, 1, 1, 1), share=1.0)


def buffer(**cfg) -> SampleBuffer:
    return SampleBuffer(ReplayConfig(enabled=True, **cfg), min_label_share=0.25)


def test_informative_means_reward_spread_and_an_accepted_label() -> None:
    assert is_informative(group(1, 0), 0.25)
    assert not is_informative(uniform(1, 0), 0.25)
    assert not is_informative(group(1, 0, share=0.2), 0.25)


def test_only_informative_groups_enter() -> None:
    b = buffer()
    b.trained([group(1, 0), uniform(2, 0), group(3, 0, share=0.1)], [], version=1)
    assert len(b) == 1


def test_fill_tops_up_the_fresh_informative_groups_only() -> None:
    b = buffer()
    b.trained([group(i, 3) for i in range(10)], [], version=1)
    fresh = [group(20, 4), group(21, 4), uniform(22, 4), uniform(23, 4)]
    assert len(b.fill(fresh, want=6, min_version=3)) == 4  # 2 informative fresh + 4
    assert b.fill([group(i, 4) for i in range(30, 36)], want=6, min_version=3) == []


def test_no_group_twice_in_one_update() -> None:
    b = buffer()
    b.trained([group(i, 3) for i in range(5)], [], version=2)
    fresh = [uniform(1, 3), uniform(2, 3)]  # the same votes, fresh again (never happens twice)
    replays = b.fill(fresh, want=10, min_version=0)
    ids = [g.problem_id for g in replays]
    assert len(ids) == len(set(ids)) == 3
    assert not {1, 2} & set(ids)


def test_stale_groups_are_never_replayed_and_leave() -> None:
    b = buffer()
    b.trained([group(1, 2), group(2, 3), group(3, 4)], [], version=3)
    replays = b.fill([], want=10, min_version=3)  # daemon.max_staleness: versions >= 3 only
    assert sorted(g.problem_id for g in replays) == [2, 3]
    assert replays[0].problem_id == 3  # the most recently sampled first
    assert len(b) == 2


def test_a_group_with_a_stale_rollout_is_stale() -> None:
    mixed = RolloutGroup(1, [Rollout([1], [2], 1.0, 2), Rollout([1], [2], 0.0, 5)], label_share=0.5)
    b = buffer()
    b.trained([mixed], [], version=4)
    assert b.fill([], want=1, min_version=3) == []


def test_size_bound_drops_the_oldest_sampled() -> None:
    b = buffer(max_groups=3)
    b.trained([group(1, 1), group(2, 2)], [], version=5)
    b.trained([group(3, 3), group(4, 4)], [], version=6)
    assert len(b) == 3
    assert sorted(g.problem_id for g in b.fill([], want=10, min_version=0)) == [2, 3, 4]


def test_replays_are_bounded() -> None:
    b = buffer(max_replays=2)
    b.trained([group(1, 5)], [], version=7)
    for _ in range(2):
        (replay,) = b.fill([], want=1, min_version=0)
        b.trained([], [replay], version=8)
    assert b.fill([], want=1, min_version=0) == []
    assert len(b) == 0


def test_a_rolled_back_version_takes_its_groups_out() -> None:
    """Its fresh groups and the replays it took leave; the others stay."""
    b = buffer()
    b.trained([group(1, 5), group(2, 5)], [], version=6)
    replays = b.fill([], want=1, min_version=0)
    b.trained([group(3, 6)], replays, version=7)
    b.forget(7)
    left = b.fill([], want=10, min_version=0)
    assert [g.problem_id for g in left] == [2]  # not the replay, not the fresh group 3


def test_a_version_rolled_back_later_takes_its_groups_out_too() -> None:
    """The guard's scheduled check may roll back a version after later updates ran."""
    b = buffer()
    b.trained([group(1, 5)], [], version=6)
    b.trained([group(2, 6)], [], version=7)
    b.forget(6)
    assert [g.problem_id for g in b.fill([], want=10, min_version=0)] == [2]


def test_replay_metrics() -> None:
    assert replay_metrics([], 16, 9) == {
        "replayed_groups": 0,
        "replay_share": 0.0,
        "replay_staleness": None,
    }
    got = replay_metrics([group(1, 7), group(2, 8)], 8, 9)
    assert got == {"replayed_groups": 2, "replay_share": 0.25, "replay_staleness": 2}
