"""The GPU host check: HFEngine in bf16, VLLMEngine generate + swap + sleep/wake, one bf16
GRPO step, on a random Qwen2.5-0.5B-shaped model (``configs/models``; nothing downloaded).

Each stage prints what it measured and PASS or FAIL; the exit code is the number of failed
stages. On a GPU host (``pip install 'ttrl[vllm]'``) it takes 2-5 minutes:

    bash benchmarks/gpu_check.sh                       # the 0.5B shape, on CUDA
    python benchmarks/gpu_check.py --device cpu --layers 2   # the same stages on a CPU box
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch

from ttrl.engines import SamplingParams, released
from ttrl.engines.hf import HFEngine
from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.trainer import Trainer
from ttrl.toy.shaped import build_shaped_model
from ttrl.toy.task import generate_problems

GREEDY = SamplingParams(temperature=0, max_new_tokens=32)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def _cuda_used() -> float:
    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0.0


def _groups(completions: list[list[Any]], seed: int) -> list[RolloutGroup]:
    """Random 0/1 rewards with spread in every group (the cost, not the learning, counts)."""
    rng = random.Random(seed)
    groups = []
    for i, group in enumerate(completions):
        rewards = [float(rng.random() < 0.5) for _ in group]
        rewards[0], rewards[1] = 1.0, 0.0
        rollouts = [
            Rollout(c.prompt_token_ids, c.token_ids or [0], r, c.model_version, c.logprobs)
            for c, r in zip(group, rewards, strict=True)
        ]
        groups.append(RolloutGroup(i, rollouts))
    return groups


class Check:
    """Runs the stages, prints each result, counts failures."""

    def __init__(self) -> None:
        self.failed = 0

    def stage(self, name: str, run: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            detail = run()
        except Exception:
            self.failed += 1
            print(f"FAIL  {name} ({time.perf_counter() - start:.1f}s)")
            traceback.print_exc()
            return
        print(f"PASS  {name} ({time.perf_counter() - start:.1f}s): {detail}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=None, help="override the depth")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()
    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; pass --device cpu for the CPU form of the check")
    dtype = torch.bfloat16 if on_cuda else torch.float32
    model_dir = Path(tempfile.mkdtemp(prefix="ttrl-gpu-check-")) / "model"
    build_shaped_model(model_dir, layers=args.layers, dtype=dtype)
    gpu = torch.cuda.get_device_name() if on_cuda else "none"
    print(f"torch {torch.__version__}, device {args.device} ({gpu}), model {model_dir}")
    prompts = [p.prompt for p in generate_problems(0, args.prompts)]
    sampling = SamplingParams(
        temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0, logprobs=True
    )
    check = Check()
    state: dict[str, Any] = {}

    def hf_engine() -> str:
        engine = HFEngine(model_dir, device=args.device, dtype="auto")
        state["hf"] = engine
        engine.generate(prompts[:2], 2, GREEDY)  # warm-up
        start = time.perf_counter()
        groups = engine.generate(prompts, args.n, sampling)
        seconds = time.perf_counter() - start
        state["samples"] = groups
        tokens = sum(len(c.token_ids) for g in groups for c in g)
        weights = {k: v.clone() for k, v in engine.model.state_dict().items()}
        start = time.perf_counter()
        engine.update_weights(weights.items(), version=1)
        swap = time.perf_counter() - start
        used = _cuda_used()
        engine.sleep()
        freed = used - _cuda_used()
        engine.wake()
        assert engine.dtype == dtype, engine.dtype
        return (
            f"{engine.dtype}, {tokens / seconds:.0f} tokens/s ({args.prompts}x{args.n}), "
            f"swap {swap * 1000:.1f} ms, sleep freed {_gib(freed)}"
        )

    def grpo_step() -> str:
        hf = state.pop("hf")
        del hf  # the trainer gets the device
        if on_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(RLConfig(lr=1e-6, train_samples=None), model_dir)
        groups = _groups(state["samples"], seed=0)
        metrics = trainer.step(groups)
        assert not metrics.skipped, metrics.skip_reason
        state["trainer"] = trainer
        peak = torch.cuda.max_memory_allocated() if on_cuda else 0
        return (
            f"{metrics.tokens} tokens in {metrics.seconds:.2f}s "
            f"({metrics.tokens / metrics.seconds:.0f} tokens/s), loss {metrics.loss:.4f}, "
            f"IS ratio mean {metrics.is_ratio_mean:.3f} max {metrics.is_ratio_max:.3f}, "
            f"peak {_gib(peak)}"
        )

    def vllm_engine() -> str:
        from ttrl.engines import VLLMOptions
        from ttrl.engines.vllm import VLLMEngine

        options = VLLMOptions(gpu_memory_utilization=0.3, sleep_level=1, enforce_eager=True)
        engine = VLLMEngine(model_dir, options=options)
        engine.generate(prompts[:2], 2, GREEDY)
        start = time.perf_counter()
        groups = engine.generate(prompts, args.n, sampling)
        seconds = time.perf_counter() - start
        tokens = sum(len(c.token_ids) for g in groups for c in g)
        trainer: Trainer = state["trainer"]
        start = time.perf_counter()
        engine.update_weights(trainer.named_tensors(), version=trainer.version)
        swap = time.perf_counter() - start
        served = engine.generate(prompts[:4], 1, GREEDY)
        assert all(c.model_version == trainer.version for g in served for c in g)
        detail = (
            f"{tokens / seconds:.0f} tokens/s ({args.prompts}x{args.n}), swap {swap * 1000:.1f} ms"
        )
        if engine.can_sleep:
            used = torch.cuda.mem_get_info()[0]
            engine.sleep()
            freed = torch.cuda.mem_get_info()[0] - used
            engine.wake()
            assert engine.generate(prompts[:4], 1, GREEDY) == engine.generate(
                prompts[:4], 1, GREEDY
            )
            # Level 2 drops the weights; released() must bring back servable ones.
            engine.options = engine.options.model_copy(update={"sleep_level": 2})
            with released(engine, lambda: (trainer.named_tensors(), trainer.version)):
                pass
            assert not engine.needs_weights
            engine.generate(prompts[:4], 1, GREEDY)
            detail += f", sleep level 1 freed {_gib(freed)}, level 2 + released() serves again"
        else:
            detail += ", sleep mode off on this platform (no-op)"
        return detail

    check.stage("HFEngine generate + swap + sleep/wake", hf_engine)
    check.stage("GRPO step", grpo_step)
    if args.no_vllm or find_spec("vllm") is None:
        print("SKIP  VLLMEngine (not installed, or --no-vllm)")
    else:
        check.stage("VLLMEngine generate + swap + sleep/wake", vllm_engine)
    print(f"{3 - check.failed} passed, {check.failed} failed")
    return check.failed


if __name__ == "__main__":
    raise SystemExit(main())
