"""Rollout throughput of HFEngine and VLLMEngine against a plain generate loop, and hot
swaps against their alternatives.

Each claim is printed next to its baseline, measured in the same run:

1. Completion tokens/s on the same prompts and sampling settings: ``HFEngine.generate``
   (length-grouped batches under a token budget) and ``VLLMEngine.generate`` vs one
   ``model.generate(num_return_sequences=n)`` call per prompt on HFEngine's model object.
   Goals: HFEngine >= 1.0x, VLLMEngine >= 2x the plain loop.
2. Seconds to serve new weights. HFEngine: ``update_weights`` (the copying swap, and
   ``share=True``, the co-located trainer's path that serves its tensors in place) vs
   ``from_pretrained`` of the same weights from disk, with the floors of any copying swap
   (a bare ``copy_`` and one read of the same tensors); VLLMEngine: ``update_weights`` vs
   starting a new engine on them. Goal: >= 10x for each.

The defaults are the demo's workload (configs/default.yaml: 16 problems a round, 16 votes,
80 new tokens, temperature 1.0, toy problems). vLLM is measured when it is installed
(``make venv-vllm``; ``--no-vllm`` skips it).

    OMP_NUM_THREADS=1 python benchmarks/rollout.py
    python benchmarks/rollout.py --model /path/to/Qwen2.5-Math-1.5B --n 16 --max-new-tokens 512
    python benchmarks/rollout.py --shape qwen2.5-0.5b-shaped --skip-throughput --max-model-len 4096

``--shape`` measures a random model of a shipped real architecture (``configs/models``,
bf16 safetensors like a hub checkpoint; nothing downloaded) instead of ``--model``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from ttrl.engines import Engine, SamplingParams
from ttrl.engines.hf import HFEngine
from ttrl.lm.paths import resolve_model_path
from ttrl.lm.tokens import cut_at_stop
from ttrl.toy.shaped import SHAPES, build_shaped_model
from ttrl.toy.task import generate_problems


def make_prompts(count: int, seed: int) -> list[str]:
    """The daemon's problems: the toy task's, at every level."""
    return [p.prompt for p in generate_problems(seed, count)]


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
        )
        for row in output[:, len(ids) :].tolist():
            tokens += len(cut_at_stop(row, engine.codec.stop_ids)[0])
    return tokens


def engine_tokens(engine: Engine, prompts: list[str], n: int, sampling: SamplingParams) -> int:
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


def throughput(engines: dict[str, Any], args: argparse.Namespace) -> None:
    hf = engines["HFEngine"]
    prompts = make_prompts(args.prompts, args.seed)
    runs: dict[str, Callable[[SamplingParams], int]] = {
        "plain loop": lambda s: plain_loop_tokens(hf, prompts, args.n, s)
    }
    for name, engine in engines.items():
        runs[name] = lambda s, e=engine: engine_tokens(e, prompts, args.n, s)
    totals = {name: [0, 0.0] for name in runs}
    for repeat in range(args.repeats + 1):  # repeat 0 warms every path up
        sampling = SamplingParams(
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed + repeat,
        )
        torch.manual_seed(args.seed + repeat)
        for name, run in runs.items():
            tokens, seconds = timed(lambda r=run, s=sampling: r(s), hf.device)
            if repeat:
                totals[name][0] += tokens
                totals[name][1] += seconds
    rates = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    print(
        f"throughput  {args.prompts} prompts x n={args.n}, max_new_tokens={args.max_new_tokens}, "
        f"T={args.temperature}, {args.repeats} repeats (completion tokens/s)"
    )
    for name, rate in rates.items():
        ratio = rate / rates["plain loop"]
        print(f"  {name + ':':<44} {rate:9.1f} tokens/s  {ratio:6.2f}x the plain loop")


def median_seconds(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = [timed(lambda: run() or 0, device)[1] for _ in range(repeats)]
    return sorted(times)[len(times) // 2]


def hot_swap(engine: HFEngine, args: argparse.Namespace) -> None:
    path = resolve_model_path(args.model)
    # The trainer's weights: separate tensors in memory on the engine's device.
    state = {k: v.detach().clone() for k, v in engine.model.state_dict().items()}
    versions = iter(range(1, 4 * args.swap_repeats + 4))
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
    # The floors of any swap that moves the bytes: copying them (what a swap must do), and
    # reading them once (what the finite check does).
    live = engine.model.state_dict()
    copy = median_seconds(
        lambda: [live[name].copy_(t) for name, t in state.items()], args.swap_repeats, engine.device
    )
    read = median_seconds(
        lambda: [t.sum(dtype=torch.float32) for t in state.values()],
        args.swap_repeats,
        engine.device,
    )
    # The co-located trainer's path (the daemon's, with one process and plain torch): the
    # engine serves the trainer's tensors themselves. Measured last: it leaves them shared.
    shared = median_seconds(
        lambda: engine.update_weights(state.items(), next(versions), share=True),
        args.swap_repeats,
        engine.device,
    )
    size = sum(t.numel() * t.element_size() for t in state.values()) / 2**30
    print(f"hot swap    HFEngine, {size:.2f} GiB of weights, median of {args.swap_repeats}")
    print(f"  from_pretrained + .to(device):               {load * 1000:9.2f} ms")
    print(f"  HFEngine.update_weights:                     {swap * 1000:9.2f} ms")
    print(f"  ratio reload / swap:                         {load / swap:9.1f}x")
    print(f"  floor: copy_ of the same tensors:            {copy * 1000:9.2f} ms")
    print(f"  floor: one read of them (sum):               {read * 1000:9.2f} ms")
    print(f"  ratio swap / (copy + read):                  {swap / (copy + read):9.2f}x")
    print(f"  ratio reload / copy (any copying swap's max): {load / copy:8.1f}x")
    print(f"  HFEngine.update_weights(share=True):         {shared * 1000:9.2f} ms")
    print(f"  ratio reload / shared swap:                  {load / shared:9.1f}x")


def vllm_hot_swap(engine: Any, hf: HFEngine, args: argparse.Namespace) -> None:
    """The alternative to a swap is a new engine on the checkpoint. Every engine started
    stays alive: closing one vLLM engine tears down the process-wide state of the others."""
    from ttrl.engines.vllm import VLLMEngine

    state = {k: v.detach().clone() for k, v in hf.model.state_dict().items()}
    params = {k: v for k, v in state.items() if k != "lm_head.weight"}  # tied: sent once
    versions = iter(range(1, 2 * args.swap_repeats + 2))
    swap = median_seconds(
        lambda: engine.update_weights(params.items(), next(versions)),
        args.swap_repeats,
        hf.device,
    )
    started: list[Any] = []
    starts = []
    for _ in range(args.restart_repeats):
        begin = time.perf_counter()
        started.append(VLLMEngine(args.model, options=engine.options))
        starts.append(time.perf_counter() - begin)
    start = statistics.median(starts)
    print(f"hot swap    VLLMEngine, median of {args.swap_repeats} swaps, {len(starts)} starts")
    print(f"  new VLLMEngine on the checkpoint:            {start * 1000:9.2f} ms")
    print(f"  VLLMEngine.update_weights:                   {swap * 1000:9.2f} ms")
    print(f"  ratio restart / swap:                        {start / swap:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--shape", choices=SHAPES, help="a random model of this shape instead")
    parser.add_argument("--skip-throughput", action="store_true", help="hot swaps only")
    parser.add_argument(
        "--max-model-len", type=int, help="vLLM context (a 32k model needs more KV on CPU)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-batch-tokens", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--swap-repeats", type=int, default=10)
    parser.add_argument("--restart-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-vllm", action="store_true", help="measure HFEngine only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.shape:
            args.model = str(build_shaped_model(Path(tmp) / "model", args.shape))
        measure(args)


def measure(args: argparse.Namespace) -> None:
    hf = HFEngine(args.model, device=args.device, max_batch_tokens=args.max_batch_tokens)
    engines: dict[str, Any] = {"HFEngine": hf}
    if not args.no_vllm and find_spec("vllm") is not None:
        from ttrl.engines.config import VLLMOptions
        from ttrl.engines.vllm import VLLMEngine

        options = VLLMOptions(max_model_len=args.max_model_len)
        engines["VLLMEngine"] = VLLMEngine(args.model, options=options)
    threads = torch.get_num_threads()
    name = f"random {args.shape}" if args.shape else args.model
    print(f"model {name} on {hf.device} ({hf.dtype}), torch threads {threads}")
    if len(engines) == 1:
        print("vLLM not measured (not installed, or --no-vllm)")
    if not args.skip_throughput:
        throughput(engines, args)
    hot_swap(hf, args)
    if "VLLMEngine" in engines:
        vllm_hot_swap(engines["VLLMEngine"], hf, args)


if __name__ == "__main__":
    main()
