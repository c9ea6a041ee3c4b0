"""Rollout throughput of HFEngine against a plain generate loop, and hot-swap against reload.

Two claims, each printed next to its baseline measured in the same run:

1. Completion tokens/s: ``HFEngine.generate(prompts, n)`` (length-grouped batches under a
   token budget) vs one ``model.generate(num_return_sequences=n)`` call per prompt, on the
   same model object, prompts, sampling settings and device. Goal: ratio >= 1.0.
2. Seconds to serve new weights: ``HFEngine.update_weights(state_dict)`` vs
   ``AutoModelForCausalLM.from_pretrained`` of the same weights from disk (moved to the
   engine's device). Goal: ratio >= 10.

    python benchmarks/rollout.py                      # the shipped tiny model
    python benchmarks/rollout.py --model /path/to/Qwen2.5-Math-1.5B --n 16 --max-new-tokens 512
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import torch
from transformers import AutoModelForCausalLM

from ttrl.engines import SamplingParams
from ttrl.engines.hf import HFEngine
from ttrl.engines.paths import resolve_model_path
from ttrl.engines.tokens import cut_at_stop


def make_prompts(count: int, seed: int) -> list[str]:
    """Arithmetic questions of mixed length, like the problems the daemon serves."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        terms = [str(rng.randint(1, 999)) for _ in range(rng.randint(2, 8))]
        prompts.append(f"What is {' + '.join(terms)}? Put the answer in \\boxed{{}}.")
    return prompts


def plain_loop_tokens(
    engine: HFEngine, prompts: list[str], n: int, sampling: SamplingParams
) -> int:
    """The baseline: one generate(num_return_sequences=n) per prompt; returns tokens made."""
    config = engine.generation_config(sampling)
    config.num_return_sequences = n
    tokens = 0
    for ids in engine.encode(prompts):
        input_ids = torch.tensor([ids], device=engine.device)
        output = engine.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            use_model_defaults=False,
        )
        for row in output[:, len(ids) :].tolist():
            tokens += len(cut_at_stop(row, engine.codec.stop_ids)[0])
    return tokens


def engine_tokens(engine: HFEngine, prompts: list[str], n: int, sampling: SamplingParams) -> int:
    groups = engine.generate(prompts, n=n, sampling=sampling)
    return sum(len(c.token_ids) for group in groups for c in group)


def timed(run: Callable[[], int], device: torch.device) -> tuple[int, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def throughput(engine: HFEngine, args: argparse.Namespace) -> None:
    prompts = make_prompts(args.prompts, args.seed)
    totals = {"plain": [0, 0.0], "engine": [0, 0.0]}
    for repeat in range(args.repeats + 1):  # repeat 0 warms up both paths
        sampling = SamplingParams(
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed + repeat,
        )
        torch.manual_seed(args.seed + repeat)
        runs = {
            "plain": lambda s=sampling: plain_loop_tokens(engine, prompts, args.n, s),
            "engine": lambda s=sampling: engine_tokens(engine, prompts, args.n, s),
        }
        for name, run in runs.items():
            tokens, seconds = timed(run, engine.device)
            if repeat:
                totals[name][0] += tokens
                totals[name][1] += seconds
    rates = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    print(
        f"throughput  {args.prompts} prompts x n={args.n}, max_new_tokens={args.max_new_tokens}, "
        f"T={args.temperature}, {args.repeats} repeats"
    )
    print(f"  plain generate(num_return_sequences=n) loop: {rates['plain']:9.1f} tokens/s")
    print(f"  HFEngine.generate:                           {rates['engine']:9.1f} tokens/s")
    print(
        f"  ratio HFEngine / plain loop:                 {rates['engine'] / rates['plain']:9.2f}x"
    )


def median_seconds(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = [timed(lambda: run() or 0, device)[1] for _ in range(repeats)]
    return sorted(times)[len(times) // 2]


def hot_swap(engine: HFEngine, args: argparse.Namespace) -> None:
    path = resolve_model_path(args.model)
    # The trainer's weights: separate tensors in memory on the engine's device.
    state = {k: v.detach().clone() for k, v in engine.model.state_dict().items()}
    versions = iter(range(1, 2 * args.swap_repeats + 2))
    swap = median_seconds(
        lambda: engine.update_weights(state.items(), next(versions)),
        args.swap_repeats,
        engine.device,
    )
    load = median_seconds(
        lambda: AutoModelForCausalLM.from_pretrained(path, dtype=engine.dtype).to(engine.device),
        args.swap_repeats,
        engine.device,
    )
    print(f"hot swap    median of {args.swap_repeats}")
    print(f"  from_pretrained + .to(device):               {load * 1000:9.2f} ms")
    print(f"  HFEngine.update_weights:                     {swap * 1000:9.2f} ms")
    print(f"  ratio reload / swap:                         {load / swap:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-batch-tokens", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--swap-repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = HFEngine(args.model, device=args.device, max_batch_tokens=args.max_batch_tokens)
    threads = torch.get_num_threads()
    print(f"model {args.model} on {engine.device} ({engine.dtype}), torch threads {threads}")
    throughput(engine, args)
    hot_swap(engine, args)


if __name__ == "__main__":
    main()
