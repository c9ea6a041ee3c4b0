"""Helpers of the trainer tests: a tiny random Qwen2 on disk, rollout groups, the 3-step run.

Imported by the tests and by ds_worker.py (which runs outside pytest).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.trainer import Trainer

PAD, EOS = 0, 1
VOCAB = 48


def build_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """Save a ~30K-parameter Qwen2 with tied embeddings and a word-level tokenizer."""
    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 3)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        eos_token_id=EOS,
        pad_token_id=PAD,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_groups(
    n_groups: int, n_per_group: int, seed: int = 0, uniform: frozenset[int] = frozenset()
) -> list[RolloutGroup]:
    """Random prompts/completions (ids 3.. are words) with 0/1 rewards; groups listed in
    ``uniform`` get identical rewards. Some completions carry an EOS and junk after it."""
    rng = random.Random(seed)
    groups = []
    for g in range(n_groups):
        prompt = [rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 6))]
        rollouts = []
        for i in range(n_per_group):
            completion = [rng.randrange(3, VOCAB) for _ in range(rng.randint(1, 9))]
            if i % 3 == 0:
                completion += [EOS] + [rng.randrange(3, VOCAB) for _ in range(3)]
            reward = 1.0 if g in uniform else float(rng.random() < 0.5)
            rollouts.append(Rollout(prompt, completion, reward, model_version=0))
        if g not in uniform and len({r.reward for r in rollouts}) == 1:
            first = rollouts[0]
            rollouts[0] = Rollout(
                first.prompt_token_ids, first.completion_token_ids, 1.0 - first.reward, 0
            )
        groups.append(RolloutGroup(problem_id=g, rollouts=rollouts))
    return groups


# Two epochs x two mini-batches: later updates see ratio != 1, so the loss (not only its
# gradient) depends on the weights; the KL term does too. A small token budget forces
# gradient accumulation over several micro-batches per rank.
TRAJECTORY_CONFIG = RLConfig(
    lr=3e-3,
    ppo_epochs=2,
    mini_batches=2,
    kl_coef=0.05,
    clip_high=0.28,
    micro_batch_tokens=48,
    train_samples=4,
    warmup_steps=2,
)


def run_trajectory(trainer: Trainer, groups: Sequence[RolloutGroup]) -> dict[str, list[float]]:
    """Three steps on the same groups; the metrics and the weights' sum of squares."""
    out: dict[str, list[float]] = {"loss": [], "entropy": [], "kl": [], "grad_norm": []}
    for _ in range(3):
        m = trainer.step(groups)
        assert not m.skipped, m.skip_reason
        for key in out:
            out[key].append(getattr(m, key))
    out["weight_sq"] = [float(sum((t.double() ** 2).sum() for _, t in trainer.named_tensors()))]
    return out
