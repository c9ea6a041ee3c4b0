"""Building the tiny model: deterministic weights, prompt-masked labels, the LR schedule."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttrl.toy.build import SHIPPED_DIR, build
from ttrl.toy.model import ToyArch
from ttrl.toy.task import generate_problems
from ttrl.toy.tokenizer import build_tokenizer
from ttrl.toy.train import IGNORE, TrainConfig, encode_batch, lr_at, train

SMALL = ToyArch(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


def small_config(seed: int, stop_share: float = 1.0) -> TrainConfig:
    return TrainConfig(
        seed=seed, arch=SMALL, steps=6, batch_size=8, warmup_steps=2, stop_share=stop_share
    )


def test_same_seed_builds_identical_weights_and_another_seed_does_not() -> None:
    first, _ = train(small_config(seed=1), progress=False)
    second, _ = train(small_config(seed=1), progress=False)
    other, _ = train(small_config(seed=2), progress=False)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert not all(torch.equal(a[name], c[name]) for name in a)
    # Training moved the weights away from a fresh initialisation with the same seed.
    torch.manual_seed(1)
    fresh = type(first)(first.config).state_dict()
    assert not torch.equal(fresh["model.embed_tokens.weight"], a["model.embed_tokens.weight"])


def test_labels_cover_the_solution_and_eos_only() -> None:
    tokenizer = build_tokenizer()
    problems = list(generate_problems(0, 2, (1, 4), split="train"))
    batch = encode_batch(problems, tokenizer)
    for row, problem in enumerate(problems):
        n_prompt = len(problem.prompt)
        n_total = n_prompt + len(problem.completion()) + 1
        labels = batch["labels"][row]
        assert (labels[:n_prompt] == IGNORE).all()
        assert tokenizer.decode(labels[n_prompt:n_total]) == problem.completion() + "<|endoftext|>"
        assert (labels[n_total:] == IGNORE).all()
        assert batch["attention_mask"][row].sum() == n_total
    # Row 0 (level 1) is shorter than row 1 (level 4), so it is right-padded.
    assert batch["input_ids"][0, -1] == tokenizer.pad_token_id


def test_lr_warms_up_linearly_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    schedule = [lr_at(s, cfg) for s in range(10, 100)]
    assert schedule == sorted(schedule, reverse=True)


def test_build_writes_a_directory_the_auto_classes_load(tmp_path) -> None:
    build(small_config(seed=0), tmp_path, progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert model.config.model_type == "qwen2"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    info = json.loads((tmp_path / "build.json").read_text())
    assert info["train_config"]["steps"] == 6
    assert info["parameters"] == sum(p.numel() for p in model.parameters())


def test_a_stopped_build_is_the_start_of_the_whole_schedule() -> None:
    """stop_share trains the first steps of the same schedule: the same losses, fewer."""
    whole: list[float] = []
    stopped: list[float] = []
    train(small_config(seed=3), progress=False, on_step=lambda _, loss: whole.append(loss))
    cfg = small_config(seed=3, stop_share=0.5)
    train(cfg, progress=False, on_step=lambda _, loss: stopped.append(loss))
    assert cfg.trained_steps == 3
    assert len(whole) == 6 and stopped == whole[:3]


def test_the_defaults_are_the_shipped_build() -> None:
    shipped = json.loads((SHIPPED_DIR / "build.json").read_text())["train_config"]
    defaults = asdict(TrainConfig())
    assert shipped == defaults
    assert TrainConfig().trained_steps == 1800


def test_bad_build_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="steps and batch_size must be >= 1"):
        TrainConfig(steps=0)
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match="stop_share must be in"):
            TrainConfig(stop_share=share)
