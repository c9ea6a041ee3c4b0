"""Pretraining the tiny model from scratch on the synthetic task, deterministically on CPU.

Plain supervised next-token training on prompt + worked solution + EOS, with the loss
on the solution only (the prompt is the user's, the model never has to produce it).
Determinism: one seed fixes the weights' initialisation (``torch.manual_seed``) and the
training stream (the task generator seeded with ``train-<seed>``, drawing only problems
of the "train" split, see :func:`ttrl.toy.task.split_of`), and torch runs in deterministic
mode; the same seed, size and thread count then give bit-identical weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from ttrl.toy.model import ToyArch, qwen2_config
from ttrl.toy.task import LEVELS, Problem, make_problem
from ttrl.toy.tokenizer import build_tokenizer

IGNORE = -100  # labels with this id carry no loss (the transformers convention)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the built weights; the defaults build the shipped model."""

    seed: int = 0
    arch: ToyArch = field(default_factory=ToyArch)
    steps: int = 2400  # the length of the learning-rate schedule
    # The share of the schedule trained: the shipped model stops after 1800 of the 2400
    # steps, caught while it still learns at a high learning rate and is unsure of its
    # sums: the headroom TTRL learns from (docs/tiny-model.md). 1.0: the whole schedule.
    stop_share: float = 0.75
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # Solutions that add the values in any order (ttrl.toy.task): several paths to one
    # answer, so the majority of samples beats greedy decoding at temperature 1.0.
    any_order: bool = True
    # One thread: on a shared 2-core machine two OpenMP threads spin-wait on each other
    # and ran a step 5x slower than one thread in our measurements.
    threads: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )
        if not 0 < self.stop_share <= 1:
            raise ValueError(f"stop_share must be in (0, 1], got {self.stop_share}")

    @property
    def trained_steps(self) -> int:
        """How many of the schedule's ``steps`` are trained (at least one)."""
        return max(1, round(self.steps * self.stop_share))


def training_stream_seed(seed: int) -> str:
    """The task-generator seed of the training stream for build ``seed``."""
    return f"train-{seed}"


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio * lr`` (the GPT-style schedule)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def encode_batch(
    problems: Sequence[Problem], tokenizer: PreTrainedTokenizerFast
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask``/``labels``; only solution+EOS is labelled."""
    rows: list[tuple[list[int], list[int]]] = []
    for problem in problems:
        prompt = tokenizer(problem.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(problem.completion(), add_special_tokens=False)["input_ids"]
        answer = [*answer, tokenizer.eos_token_id]
        rows.append((prompt + answer, [IGNORE] * len(prompt) + answer))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labelled) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(labelled)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def train(
    cfg: TrainConfig,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerFast]:
    """Build the tokenizer and train a fresh model per ``cfg``; returns both, model in eval mode."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    # Denormal floats are orders of magnitude slower on CPU and carry no signal here.
    torch.set_flush_denormal(True)
    try:
        tokenizer = build_tokenizer()
        config = qwen2_config(cfg.arch, tokenizer)
        # Eager attention: on CPU at these sizes it is faster than SDPA, and it is one
        # fixed kernel whatever the torch build picks.
        config._attn_implementation = "eager"
        torch.manual_seed(cfg.seed)
        model = Qwen2ForCausalLM(config)
        model.train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
        )
        rng = random.Random(training_stream_seed(cfg.seed))
        levels = sorted(LEVELS)
        bar = tqdm(range(cfg.trained_steps), desc="training tiny model", disable=not progress)
        for step in bar:
            # One level per batch, in turn: its problems have about the same length, so
            # padding wastes little compute.
            level = levels[step % len(levels)]
            problems = [
                make_problem(rng, level, "train", cfg.any_order) for _ in range(cfg.batch_size)
            ]
            batch = encode_batch(problems, tokenizer)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if on_step is not None:
                on_step(step, loss.item())
        model.eval()
        return model, tokenizer
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_flush_denormal(False)
