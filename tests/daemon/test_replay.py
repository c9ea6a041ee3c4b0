"""The selective sample buffer's bounds: size, staleness, replays, one use per update, and
nothing from an update the guard rolled back."""

from __future__ import annotations

from ttrl.config.daemon import ReplayConfig
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
    assert len(b.fill(fresh, want=6, min_version=3, most=100)) == 4  # 2 informative fresh + 4
    assert b.fill([group(i, 4) for i in range(30, 36)], want=6, min_version=3, most=100) == []


def test_no_group_twice_in_one_update() -> None:
    b = buffer()
    b.trained([group(i, 3) for i in range(5)], [], version=2)
    fresh = [uniform(1, 3), uniform(2, 3)]  # the same votes, fresh again (never happens twice)
    replays = b.fill(fresh, want=10, min_version=0, most=100)
    ids = [g.problem_id for g in replays]
    assert len(ids) == len(set(ids)) == 3
    assert not {1, 2} & set(ids)


def test_stale_groups_are_never_replayed_and_leave() -> None:
    b = buffer()
    b.trained([group(1, 2), group(2, 3), group(3, 4)], [], version=3)
    # daemon.max_staleness: rollouts of versions >= 3 only
    replays = b.fill([], want=10, min_version=3, most=100)
    assert sorted(g.problem_id for g in replays) == [2, 3]
    assert replays[0].problem_id == 3  # the most recently sampled first
    assert len(b) == 2


def test_a_group_with_a_stale_rollout_is_stale() -> None:
    mixed = RolloutGroup(1, [Rollout([1], [2], 1.0, 2), Rollout([1], [2], 0.0, 5)], label_share=0.5)
    b = buffer()
    b.trained([mixed], [], version=4)
    assert b.fill([], want=1, min_version=3, most=100) == []


def test_size_bound_drops_the_oldest_sampled() -> None:
    b = buffer(max_groups=3)
    b.trained([group(1, 1), group(2, 2)], [], version=5)
    b.trained([group(3, 3), group(4, 4)], [], version=6)
    assert len(b) == 3
    assert sorted(g.problem_id for g in b.fill([], want=10, min_version=0, most=100)) == [2, 3, 4]


def test_replays_are_bounded() -> None:
    b = buffer(max_replays=2)
    b.trained([group(1, 5)], [], version=7)
    for _ in range(2):
        (replay,) = b.fill([], want=1, min_version=0, most=100)
        b.trained([], [replay], version=8)
    assert b.fill([], want=1, min_version=0, most=100) == []
    assert len(b) == 0


def test_a_rollback_takes_out_every_group_trained_past_its_target() -> None:
    """Rolled back to v6: groups trained into v7 (fresh, or replayed there) and into an
    unprobed v8 between leave; those of v6 and before stay."""
    b = buffer()
    b.trained([group(1, 5), group(2, 5), group(3, 5)], [], version=6)
    replays = b.fill([], want=1, min_version=0, most=100)
    b.trained([group(4, 6)], replays, version=7)
    b.trained([group(5, 7)], [], version=8)
    b.forget_after(6)
    left = sorted(g.problem_id for g in b.fill([], want=10, min_version=0, most=100))
    assert left == sorted({1, 2, 3} - {replays[0].problem_id})


def test_replays_respect_the_update_cap() -> None:
    """daemon.max_groups_per_update bounds fresh + replayed groups."""
    b = buffer()
    b.trained([group(i, 3) for i in range(10)], [], version=4)
    fresh = [uniform(i, 4) for i in range(20, 26)]
    assert len(b.fill(fresh, want=8, min_version=3, most=10)) == 4
    assert b.fill(fresh, want=8, min_version=3, most=6) == []


def test_without_dropping_uniform_groups_every_accepted_group_counts() -> None:
    """rl.drop_uniform_groups false (REINFORCE): uniform groups train, so they are kept and
    count as informative."""
    assert is_informative(uniform(1, 0), 0.25, drop_uniform=False)
    b = SampleBuffer(ReplayConfig(enabled=True), min_label_share=0.25, drop_uniform=False)
    b.trained([uniform(1, 3), group(2, 3, share=0.1)], [], version=4)
    assert len(b) == 1
    assert b.fill([uniform(3, 4)], want=1, min_version=3, most=10) == []


def test_replay_metrics() -> None:
    assert replay_metrics([], 16, 9) == {
        "replayed_groups": 0,
        "replay_share": 0.0,
        "replay_staleness": None,
    }
    got = replay_metrics([group(1, 7), group(2, 8)], 8, 9)
    assert got == {"replayed_groups": 2, "replay_share": 0.25, "replay_staleness": 2}
