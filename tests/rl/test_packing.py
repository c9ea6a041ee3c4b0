"""Left padding, position ids, EOS cut and micro-batch planning."""

import pytest
import torch

from ttrl.lm.padding import position_ids_from_mask
from ttrl.rl.packing import TrainSequence, collate, plan_micro_batches, shard_micro_batches


def test_position_ids_start_at_zero_after_left_padding() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_collate_left_pads_and_right_aligns_completions() -> None:
    seqs = [
        TrainSequence(prompt=[10, 11], completion=[20, 21, 22], advantage=1.5),
        TrainSequence(prompt=[12, 13, 14, 15], completion=[23], advantage=-0.5),
    ]
    mb = collate(seqs, pad_id=0)
    assert mb.input_ids.tolist() == [[10, 11, 20, 21, 22], [12, 13, 14, 15, 23]]
    seqs[0] = TrainSequence(prompt=[10], completion=[20, 21], advantage=1.5)
    mb = collate(seqs, pad_id=0)
    assert mb.input_ids.tolist() == [[0, 0, 10, 20, 21], [12, 13, 14, 15, 23]]
    assert mb.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert mb.position_ids.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert mb.response_mask.tolist() == [[1, 1], [0, 1]]
    assert mb.targets.tolist() == [[20, 21], [15, 23]]
    assert mb.advantages.tolist() == [1.5, -0.5]
    with pytest.raises(ValueError, match="at least one"):
        collate([], pad_id=0)


def test_plan_respects_the_token_budget_and_covers_every_sequence() -> None:
    lengths = [5, 9, 3, 30, 8, 8, 2]
    plan = plan_micro_batches(lengths, token_budget=20)
    assert sorted(i for mb in plan for i in mb) == list(range(len(lengths)))
    for mb in plan:
        padded = len(mb) * max(lengths[i] for i in mb)
        assert padded <= 20 or len(mb) == 1
    assert [3] in plan  # longer than the budget: alone


@pytest.mark.parametrize("n", [1, 3, 7, 16])
def test_shards_have_equal_micro_batch_counts(n: int) -> None:
    lengths = [(7 * i) % 11 + 1 for i in range(n)]
    plans = shard_micro_batches(lengths, world_size=3, token_budget=12)
    assert len({len(p) for p in plans}) == 1
    seen = sorted(i for p in plans for mb in p for i in mb)
    assert seen == list(range(n))
    if n < 3:
        assert any(mb == [] for p in plans for mb in p)
