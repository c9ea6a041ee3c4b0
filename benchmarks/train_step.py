"""Trained tokens/s of one GRPO step against the floor: a plain causal-LM loss step.

Both sides run on the same model weights, device, micro-batches (same padding, same
``position_ids``, same ``logits_to_keep``) and completion tokens, with the same AdamW,
gradient clipping and bf16 autocast on CUDA. The floor is
``cross_entropy(completion tokens)`` forward + backward + optimizer step; the GRPO step is
``Trainer.step`` (group selection, advantages, clipped surrogate, aggregation, metrics,
entropy). Goal: ratio >= 0.85, i.e. the RL machinery costs < 15%.

A second line measures ``recompute_old_logprobs="always"``: the extra no-grad forward that
PPO needs when a batch gets several optimizer steps (``auto`` skips it for one step).

    python benchmarks/train_step.py                        # small random Qwen2 on CPU
    python benchmarks/train_step.py --hidden 1024 --layers 8 --vocab 32000 --device cuda
    python benchmarks/train_step.py --shape qwen2.5-0.5b-shaped --gradient-checkpointing

``--shape`` builds a random model of a shipped real architecture (``configs/models``, e.g.
Qwen2.5-0.5B's) instead of the small random Qwen2; ``--gradient-checkpointing`` turns it on
for both sides (the floor too, so the ratio still isolates the RL machinery). On a model
that size a trainer holds about 16 bytes a parameter, so only the default step is measured
(``--no-recompute`` is implied).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models
from transformers import (
    AutoModelForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.forward import autocast_for
from ttrl.rl.packing import MicroBatch, TrainSequence, collate, shard_micro_batches
from ttrl.rl.trainer import Trainer
from ttrl.toy.shaped import SHAPES, build_shaped_model, shaped_config


def build_model_dir(args: argparse.Namespace, path: Path) -> Path:
    """A random Qwen2 of the requested size plus a minimal tokenizer, saved like a hub model."""
    vocab = {f"t{i}": i for i in range(args.vocab)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t2")),
        pad_token="t0",
        eos_token="t1",
        unk_token="t2",
    )
    config = Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=max(args.hidden // 64, 1),
        num_key_value_heads=max(args.hidden // 128, 1),
        max_position_embeddings=args.prompt_len + args.completion_len + 8,
        tie_word_embeddings=True,
        eos_token_id=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_groups(args: argparse.Namespace) -> list[RolloutGroup]:
    """Random prompts and completions of mixed length (no EOS), 0/1 rewards with spread."""
    rng = random.Random(0)
    groups = []
    for g in range(args.groups):
        prompt = [rng.randrange(3, args.vocab) for _ in range(args.prompt_len)]
        rollouts = [
            Rollout(
                prompt,
                [
                    rng.randrange(3, args.vocab)
                    for _ in range(rng.randint(args.completion_len // 2, args.completion_len))
                ],
                float(i % 2),
                0,
            )
            for i in range(args.group_size)
        ]
        groups.append(RolloutGroup(g, rollouts))
    return groups


def floor_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, micro: list[MicroBatch]
) -> None:
    """Masked causal-LM cross-entropy on the completion tokens: forward, backward, step."""
    n_tokens = sum(float(mb.response_mask.sum()) for mb in micro)
    for mb in micro:
        with autocast_for(mb.input_ids.device):
            logits = model(
                input_ids=mb.input_ids,
                attention_mask=mb.attention_mask,
                position_ids=mb.position_ids,
                logits_to_keep=mb.response_len + 1,
                use_cache=False,
            ).logits[:, :-1]
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), mb.targets.reshape(-1), reduction="none"
        )
        ((nll * mb.response_mask.reshape(-1)).sum() / n_tokens).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--completion-len", type=int, default=128)
    parser.add_argument("--micro-batch-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=SHAPES, help="a shipped real architecture")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--no-recompute", action="store_true", help='skip recompute_old_logprobs="always"'
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    modes = ("auto",) if args.no_recompute or args.shape else ("auto", "always")
    if args.shape:
        shape = shaped_config(args.shape)
        args.vocab, args.hidden, args.layers = (
            shape.vocab_size,
            shape.hidden_size,
            shape.num_hidden_layers,
        )

    with tempfile.TemporaryDirectory() as tmp:
        if args.shape:
            model_dir = build_shaped_model(Path(tmp) / "model", args.shape, dtype=torch.float32)
        else:
            model_dir = build_model_dir(args, Path(tmp) / "model")
        groups = make_groups(args)
        common = {
            "train_samples": None,
            "lr": 1e-6,
            "micro_batch_tokens": args.micro_batch_tokens,
            "device": args.device,
            "gradient_checkpointing": args.gradient_checkpointing,
        }
        trainers = {
            mode: Trainer(RLConfig(recompute_old_logprobs=mode, **common), model_dir)
            for mode in modes
        }

        floor_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        if args.gradient_checkpointing:
            floor_model.gradient_checkpointing_enable()
        floor_model.to(device).train()
        optimizer = torch.optim.AdamW(floor_model.parameters(), lr=1e-6, weight_decay=0.01)
        seqs = [
            TrainSequence(r.prompt_token_ids, r.completion_token_ids, 0.0)
            for g in groups
            for r in g.rollouts
        ]
        plan = shard_micro_batches([s.length for s in seqs], 1, args.micro_batch_tokens)[0]
        micro = [collate([seqs[i] for i in mb], pad_id=0).to(device) for mb in plan]
        tokens = sum(len(s.completion) for s in seqs)

        runs: dict[str, Callable[[], None]] = {
            "floor": lambda: floor_step(floor_model, optimizer, micro)
        }
        for mode, trainer in trainers.items():
            runs[mode] = lambda t=trainer: t.step(groups)
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for fn in runs.values():  # warm-up
            timed(fn, device)
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits all alike
            for name, fn in runs.items():
                seconds[name].append(timed(fn, device))

    tps = {name: tokens / statistics.median(s) for name, s in seconds.items()}
    print(
        f"device={device} model={args.shape or 'random Qwen2'} hidden={args.hidden} "
        f"layers={args.layers} vocab={args.vocab} sequences={len(seqs)} "
        f"completion_tokens={tokens} micro_batches={len(micro)} "
        f"gradient_checkpointing={args.gradient_checkpointing} repeats={args.repeats} (median)"
    )
    print(f"floor  causal-LM loss step : {tps['floor']:10.1f} tokens/s")
    labels = {"auto": "GRPO step (default)      ", "always": "GRPO step, recompute old "}
    for name in modes:
        label = labels[name]
        ratio = tps[name] / tps["floor"]
        print(f"{label}: {tps[name]:10.1f} tokens/s   ratio {ratio:.3f}  (goal >= 0.85)")


if __name__ == "__main__":
    main()
