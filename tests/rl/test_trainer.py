"""The Trainer on a real tiny Qwen2: updates, skips, accumulation, KL/entropy, export."""

import json
import math
import random
from pathlib import Path

import pytest
import torch
from loguru import logger
from pydantic import ValidationError
from rl_helpers import EOS, make_groups
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttrl.lm.tokens import cut_at_stop
from ttrl.rl.backends import decay_factor, load_deepspeed_config, warmup_factor
from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.plan import step_chunks
from ttrl.rl.trainer import Trainer


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in trainer.named_tensors()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_step_updates_weights_and_reports_metrics(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(lr=1e-2, train_samples=None, micro_batch_tokens=64), tiny_model_dir)
    groups = make_groups(4, 6, uniform=frozenset({2}))
    before = _weights(trainer)
    m = trainer.step(groups)
    assert not m.skipped and m.skip_reason is None
    assert (m.version, trainer.version, m.optimizer_steps) == (1, 1, 1)
    assert (m.groups, m.groups_dropped, m.sequences) == (4, 1, 18)
    kept = [r for g in groups if g.problem_id != 2 for r in g.rollouts]
    assert m.tokens == sum(len(cut_at_stop(r.completion_token_ids, [EOS])[0]) for r in kept)
    assert m.mean_reward == pytest.approx(sum(r.reward for g in groups for r in g.rollouts) / 24)
    assert 0 < m.entropy <= math.log(48) + 1e-6
    assert m.grad_norm > 0 and m.lr == pytest.approx(1e-2) and m.seconds > 0
    # One optimizer step per batch: the old policy is the current one, nothing is clipped.
    assert m.clip_frac == 0 and m.approx_kl == 0
    assert _max_diff(before, _weights(trainer)) > 1e-4


def test_norm_gains_move_at_their_own_learning_rate(tiny_model_dir: Path) -> None:
    # AdamW's first step moves every parameter with a gradient by about its lr.
    cfg = RLConfig(lr=1e-4, norm_lr_scale=50, weight_decay=0.0, train_samples=None)
    trainer = Trainer(cfg, tiny_model_dir)
    before = _weights(trainer)
    m = trainer.step(make_groups(4, 6))
    after = _weights(trainer)
    assert not m.skipped and m.lr == pytest.approx(1e-4)
    gains = {n for n in before if "norm" in n}
    assert len(gains) == 2 * 2 + 1  # two per decoder layer of the test model, one final
    moved_gain = max(float((after[n] - before[n]).abs().max()) for n in gains)
    moved_rest = max(float((after[n] - before[n]).abs().max()) for n in before if n not in gains)
    assert moved_gain == pytest.approx(50 * 1e-4, rel=0.05)
    assert 0 < moved_rest <= 1e-4 * 1.05


def test_a_batch_of_low_share_labels_is_skipped_and_says_why(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(min_label_share=0.5), tiny_model_dir)
    groups = [RolloutGroup(g.problem_id, g.rollouts, 0.25) for g in make_groups(3, 4)]
    m = trainer.step(groups)
    assert m.skipped and (m.groups_low_share, m.groups_dropped, trainer.version) == (3, 0, 0)
    assert m.skip_reason == "no group left: 0 without reward spread, 3 below rl.min_label_share"


def test_train_samples_limits_each_group(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(train_samples=3, drop_uniform_groups=False), tiny_model_dir)
    m = trainer.step(make_groups(4, 8))
    assert (m.groups_dropped, m.sequences) == (0, 12)


def test_batch_without_reward_spread_is_skipped(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(), tiny_model_dir, version=3)
    before = _weights(trainer)
    m = trainer.step(make_groups(3, 4, uniform=frozenset({0, 1, 2})))
    assert m.skipped and m.skip_reason == "no group has reward spread"
    assert (m.groups_dropped, m.version, trainer.version, m.staleness) == (3, 3, 3, 3)
    assert _max_diff(before, _weights(trainer)) == 0


@pytest.fixture
def log_lines() -> list[str]:
    lines: list[str] = []
    sink = logger.add(lambda msg: lines.append(str(msg)), level="WARNING")
    yield lines
    logger.remove(sink)


def test_non_finite_loss_skips_the_step(tiny_model_dir: Path, log_lines: list[str]) -> None:
    trainer = Trainer(RLConfig(lr=1e-2, micro_batch_tokens=40), tiny_model_dir)
    before = _weights(trainer)

    def poison(module, args, output):  # what a bf16 overflow in a layer looks like
        return output * float("inf")

    hook = trainer.module.model.layers[0].mlp.register_forward_hook(poison)
    m = trainer.step(make_groups(3, 4))
    hook.remove()
    assert m.skipped and m.skip_reason == "non-finite loss"
    assert trainer.version == 0 and _max_diff(before, _weights(trainer)) == 0
    assert any("skipped" in line and "non-finite loss" in line for line in log_lines)
    # Nothing lingers: the next step trains normally.
    assert not trainer.step(make_groups(3, 4)).skipped and trainer.version == 1


def test_non_finite_gradient_skips_the_step(tiny_model_dir: Path, log_lines: list[str]) -> None:
    trainer = Trainer(RLConfig(lr=1e-2), tiny_model_dir)
    before = _weights(trainer)
    weight = trainer.module.model.layers[1].mlp.down_proj.weight
    hook = weight.register_hook(lambda grad: grad * float("inf"))
    m = trainer.step(make_groups(3, 4))
    hook.remove()
    assert m.skipped and m.skip_reason == "non-finite gradient norm"
    assert math.isfinite(m.loss) and not math.isfinite(m.grad_norm)
    assert _max_diff(before, _weights(trainer)) == 0
    assert any("non-finite gradient norm" in line for line in log_lines)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_micro_batching_does_not_change_the_step(tiny_model_dir: Path, mode: str) -> None:
    groups = make_groups(4, 5, seed=2)
    results = []
    for budget in (12, 100_000):
        config = RLConfig(
            lr=1e-3, loss_agg=mode, micro_batch_tokens=budget, max_completion_tokens=16
        )
        trainer = Trainer(config, tiny_model_dir)
        results.append((trainer.step(groups), _weights(trainer)))
    (small, w_small), (big, w_big) = results
    assert small.loss == pytest.approx(big.loss, rel=1e-6, abs=1e-7)
    # Adam's first step is scale-free, so the gradient norm is what pins the normalisation;
    # the weights pin its direction (float reordering moves near-zero gradients a little).
    assert small.grad_norm == pytest.approx(big.grad_norm, rel=1e-5)
    assert _max_diff(w_small, w_big) < 2e-5


def test_gradient_checkpointing_does_not_change_the_step(tiny_model_dir: Path) -> None:
    groups = make_groups(3, 4, seed=8)
    runs = []
    for checkpointing in (False, True):
        trainer = Trainer(RLConfig(gradient_checkpointing=checkpointing), tiny_model_dir)
        runs.append((trainer.step(groups).grad_norm, _weights(trainer)))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    assert _max_diff(runs[0][1], runs[1][1]) < 1e-6


def test_learning_rate_warms_up_linearly(tiny_model_dir: Path) -> None:
    assert [warmup_factor(s, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    trainer = Trainer(RLConfig(lr=1e-3, warmup_steps=2), tiny_model_dir)
    lrs = [trainer.step(make_groups(2, 4)).lr for _ in range(3)]
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3])


def test_learning_rate_decays_on_a_cosine_then_holds(tiny_model_dir: Path) -> None:
    assert [decay_factor(s, 0, 4, 0.2) for s in range(6)] == pytest.approx(
        [
            1.0,
            0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2,
            0.6,
            0.2 + 0.8 * (1 - math.cos(math.pi / 4)) / 2,
            0.2,
            0.2,
        ]
    )
    assert decay_factor(1, 2, 4, 0.2) == 1.0  # still warming up
    assert decay_factor(10**6, 0, None, 0.2) == 1.0
    cfg = RLConfig(lr=1e-3, warmup_steps=1, lr_decay_steps=2, lr_decay_floor=0.5, norm_lr_scale=10)
    trainer = Trainer(cfg, tiny_model_dir)
    lrs = [trainer.step(make_groups(2, 4)).lr for _ in range(5)]
    assert lrs == pytest.approx([1e-3, 1e-3, 7.5e-4, 5e-4, 5e-4])
    # The normalisation gains follow the same schedule at their own scale.
    gains = trainer.backend.optimizer.param_groups[1]
    assert gains["lr"] == pytest.approx(5e-3)
    # A trainer rebuilt at a later version (restart, rollback) does not restart the decay:
    # at version 2 (one step per update) it goes on like the third step above.
    resumed = Trainer(cfg, tiny_model_dir, version=2)
    assert [resumed.step(make_groups(2, 4)).lr for _ in range(2)] == pytest.approx([7.5e-4, 5e-4])


def test_recompute_matches_the_on_policy_shortcut(tiny_model_dir: Path) -> None:
    groups = make_groups(4, 5, seed=4)
    weights = []
    for recompute in ("auto", "always"):
        trainer = Trainer(RLConfig(lr=1e-3, recompute_old_logprobs=recompute), tiny_model_dir)
        assert trainer.step(groups).approx_kl == pytest.approx(0, abs=1e-9)
        weights.append(_weights(trainer))
    assert _max_diff(*weights) < 1e-6


def test_epochs_and_mini_batches_train_off_policy(tiny_model_dir: Path) -> None:
    config = RLConfig(lr=3e-2, ppo_epochs=2, mini_batches=2, clip_low=0.05, clip_high=0.05)
    trainer = Trainer(config, tiny_model_dir)
    m = trainer.step(make_groups(4, 6, seed=5))
    assert m.optimizer_steps == 4 and not m.skipped
    assert m.approx_kl > 0 and 0 < m.clip_frac < 1


def test_kl_to_the_frozen_reference(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(lr=1e-2, kl_coef=0.5), tiny_model_dir)
    assert trainer.ref is not None
    ref_before = {n: p.clone() for n, p in trainer.ref.named_parameters()}
    groups = make_groups(3, 4, seed=6)
    first, second = trainer.step(groups), trainer.step(groups)
    assert first.kl == pytest.approx(0, abs=1e-12)  # the policy starts as the reference
    assert second.kl > 0 and second.loss == pytest.approx(second.pg_loss + 0.5 * second.kl)
    assert all(torch.equal(p, ref_before[n]) for n, p in trainer.ref.named_parameters())
    assert not any(p.requires_grad for p in trainer.ref.parameters())


def test_entropy_bonus_enters_the_loss(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(entropy_coef=0.1), tiny_model_dir)
    m = trainer.step(make_groups(3, 4, seed=7))
    # token-mean: the aggregated entropy term is the token-mean entropy metric.
    assert m.loss == pytest.approx(m.pg_loss - 0.1 * m.entropy, rel=1e-6)


def test_checkpoint_is_loadable_and_matches_named_tensors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = Trainer(RLConfig(lr=1e-2), tiny_model_dir)
    trainer.step(make_groups(3, 4))
    path = trainer.save_checkpoint(tmp_path / "versions" / "v1")
    assert [p.name for p in path.parent.iterdir()] == ["v1"]  # no temp dir left behind
    loaded = AutoModelForCausalLM.from_pretrained(path)
    state = loaded.state_dict()
    for name, tensor in trainer.named_tensors():
        assert torch.equal(state[name], tensor), name
    assert AutoTokenizer.from_pretrained(path).eos_token_id == EOS
    with pytest.raises(FileExistsError, match="already exists"):
        trainer.save_checkpoint(path)


def test_named_tensors_feed_the_hf_engine(tiny_model_dir: Path) -> None:
    from ttrl.engines.hf import HFEngine

    trainer = Trainer(RLConfig(lr=1e-2), tiny_model_dir)
    trainer.step(make_groups(3, 4))
    engine = HFEngine(str(tiny_model_dir), device="cpu")
    engine.update_weights(trainer.named_tensors(), version=trainer.version)
    served = engine.model.state_dict()
    assert engine.version == 1
    for name, tensor in trainer.named_tensors():
        assert torch.equal(served[name].float(), tensor), name


def test_staleness_counts_versions_behind(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(), tiny_model_dir, version=5)
    groups = [RolloutGroup(0, [Rollout([3], [4], 1.0, 2), Rollout([3], [5], 0.0, 4)])]
    m = trainer.step(groups)
    assert (m.staleness, m.version) == (3, 6)


def test_bad_inputs_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        Trainer(RLConfig(), tmp_path)
    with pytest.raises(ValidationError, match="drop_uniform_groups=false"):
        RLConfig(advantage="reinforce")
    with pytest.raises(ValidationError, match="loss_agg"):
        RLConfig(loss_agg="sum")
    with pytest.raises(ValidationError, match="extra"):
        RLConfig(learning_rate=1.0)


def test_deepspeed_json_is_completed_by_the_trainer(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[2] / "configs" / "deepspeed"
    config = RLConfig(max_grad_norm=0.5)
    for stage, name in ((2, "zero2.json"), (3, "zero3.json")):
        ds = load_deepspeed_config(shipped / name, config, on_cuda=False)
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["bf16"]["enabled"] is False
        assert ds["gradient_clipping"] == 0.5
        assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (1, 1)
        assert load_deepspeed_config(shipped / name, config, on_cuda=True)["bf16"]["enabled"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"optimizer": {"type": "Adam"}}))
    with pytest.raises(ValueError, match="remove the 'optimizer' section"):
        load_deepspeed_config(bad, config, on_cuda=False)
    bad.write_text(json.dumps({"fp16": {"enabled": True}}))
    with pytest.raises(ValueError, match="fp16 is not supported"):
        load_deepspeed_config(bad, config, on_cuda=True)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read it as JSON"):
        load_deepspeed_config(bad, config, on_cuda=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_runs_under_bf16_autocast(tiny_model_dir: Path) -> None:
    trainer = Trainer(RLConfig(lr=1e-3, device="cuda", kl_coef=0.1), tiny_model_dir)
    before = _weights(trainer)
    m = trainer.step(make_groups(4, 6))
    assert not m.skipped and math.isfinite(m.loss) and m.grad_norm > 0
    # Master weights stay fp32 on the GPU; only the compute is bf16.
    assert all(t.dtype == torch.float32 and t.is_cuda for _, t in trainer.named_tensors())
    assert _max_diff(before, _weights(trainer)) > 0


@pytest.mark.parametrize("split", ["groups", "rollouts"])
def test_step_chunks_deal_every_sequence_once_into_at_most_the_steps(split: str) -> None:
    group_of_seq = [g for g in range(5) for _ in range(3)]  # 5 groups of 3
    chunks = step_chunks(group_of_seq, 4, split, random.Random(0))
    assert len(chunks) == 4 and all(chunks)
    assert sorted(i for c in chunks for i in c) == list(range(15))
    groups_per_step = [{group_of_seq[i] for i in c} for c in chunks]
    if split == "groups":  # a group never spans two steps
        assert sum(len(g) for g in groups_per_step) == 5
    else:  # singly dealt: some step mixes rollouts of more groups than whole groups allow
        assert max(len(g) for g in groups_per_step) > 2
    assert step_chunks(group_of_seq, 9, split, random.Random(1)) == step_chunks(
        group_of_seq, 9, split, random.Random(1)
    )
    assert len(step_chunks([0, 0], 4, "groups", random.Random(0))) == 1
