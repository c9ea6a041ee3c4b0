"""Where the parameters live and how they are updated: plain torch or DeepSpeed ZeRO.

The trainer runs the same forward/loss code on both; a backend owns the optimizer, the
learning-rate schedule, gradient reduction across ranks and access to the full weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR

from ttrl.rl.config import RLConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up: the ``step``-th optimizer step (0-based) runs at
    ``lr * min(1, (step + 1) / warmup_steps)``; constant after."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def decay_factor(step: int, warmup_steps: int, decay_steps: int | None, floor: float) -> float:
    """Cosine decay after the warm-up: from 1 to ``floor`` over ``decay_steps`` optimizer
    steps, then ``floor`` for good (a daemon has no last step); 1 when ``decay_steps`` is None."""
    if not decay_steps:
        return 1.0
    progress = min(1.0, max(0, step - warmup_steps) / decay_steps)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def norm_parameters(module: torch.nn.Module) -> set[int]:
    """``id()`` of the gains of normalisation layers (``LayerNorm``, ``Qwen2RMSNorm``, ...:
    any module whose class name ends in ``Norm``)."""
    return {
        id(p)
        for sub in module.modules()
        if type(sub).__name__.endswith("Norm")
        for p in sub.parameters(recurse=False)
    }


def make_optimizer(module: torch.nn.Module, config: RLConfig) -> torch.optim.AdamW:
    """AdamW at ``rl.lr``; the normalisation gains at ``rl.lr * rl.norm_lr_scale``."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": params}]
    if config.norm_lr_scale != 1.0:
        norms = norm_parameters(module)
        groups = [
            {"params": [p for p in params if id(p) not in norms]},
            {
                "params": [p for p in params if id(p) in norms],
                "lr": config.lr * config.norm_lr_scale,
            },
        ]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )


def make_schedule(optimizer: torch.optim.Optimizer, config: RLConfig, steps_done: int) -> LambdaLR:
    """Warm-up from this optimizer's first step (its moments start from zero); the decay goes
    on from ``steps_done``, the steps the model already took, so a restart or a rollback does
    not put the learning rate back to its peak."""

    def factor(step: int) -> float:
        return warmup_factor(step, config.warmup_steps) * decay_factor(
            step + steps_done, config.warmup_steps, config.lr_decay_steps, config.lr_decay_floor
        )

    return LambdaLR(optimizer, factor)


class Backend(Protocol):
    """What the trainer needs from a parameter-update engine."""

    module: PreTrainedModel  # the HF model (unwrapped)
    model: torch.nn.Module  # what to call forward on
    rank: int
    world_size: int

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None: ...

    def step(self) -> tuple[float, bool]:
        """Clip, update, advance the schedule; return (grad norm, applied). A non-finite
        gradient norm skips the update and clears the gradients."""
        ...

    @property
    def lr(self) -> float: ...

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor: ...

    def named_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full (unpartitioned) parameters by name; a collective under ZeRO-3."""
        ...

    def barrier(self) -> None: ...


class TorchBackend:
    """One process, torch AdamW, ``clip_grad_norm_``."""

    rank = 0
    world_size = 1

    def __init__(self, module: PreTrainedModel, config: RLConfig, steps_done: int = 0) -> None:
        self.module = module
        self.model: torch.nn.Module = module
        self.max_grad_norm = config.max_grad_norm
        self.optimizer = make_optimizer(module, config)
        self.scheduler = make_schedule(self.optimizer, config, steps_done)

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        loss.backward()

    def step(self) -> tuple[float, bool]:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        applied = math.isfinite(norm)
        if applied:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm, applied

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def named_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, p in self.module.named_parameters():
            yield name, p.detach()

    def barrier(self) -> None:
        return None


def load_deepspeed_config(path: Path, config: RLConfig, on_cuda: bool) -> dict[str, Any]:
    """Read a DeepSpeed JSON and fill in what the trainer owns.

    The trainer sizes its own micro-batches by tokens and marks accumulation boundaries
    itself, so batch sizes are pinned to 1; clipping comes from ``rl.max_grad_norm``; the
    optimizer and schedule are the trainer's torch AdamW + warm-up (no DeepSpeed op has to
    be compiled). ``"bf16": {"enabled": "auto"}`` means bf16 on CUDA only.
    """
    try:
        ds = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"rl.deepspeed_config {path}: cannot read it as JSON ({e})") from e
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise ValueError(
                f"rl.deepspeed_config {path}: remove the {key!r} section; the trainer brings its "
                "own AdamW and warm-up (set rl.lr, rl.warmup_steps)"
            )
    if ds.get("fp16", {}).get("enabled") in (True, "auto"):
        raise ValueError(
            f"rl.deepspeed_config {path}: fp16 is not supported (the forward runs under bf16 "
            'autocast); use "bf16": {"enabled": "auto"}'
        )
    ds.pop("train_batch_size", None)
    ds["train_micro_batch_size_per_gpu"] = 1
    ds["gradient_accumulation_steps"] = 1
    ds["gradient_clipping"] = config.max_grad_norm
    bf16 = ds.setdefault("bf16", {})
    if bf16.get("enabled") == "auto":
        bf16["enabled"] = on_cuda
    ds.setdefault("steps_per_print", 2**31 - 1)
    return ds


def _no_shm_comm_build(deepspeed: Any) -> None:
    """Keep DeepSpeed's CPU accelerator from JIT-compiling its shared-memory all-reduce op.

    DeepSpeed 0.19 builds ``deepspeed_shm_comm`` with a C++ toolchain (a minute or more, and
    a failure where no compiler exists) whenever its op probe says it could. gloo does the
    same job here, so the probe's result, cached in ``deepspeed.ops``, is set to "no" first.
    Read through ``__dict__`` so that the probe of every other op is not triggered.
    """
    deepspeed.ops.__dict__.setdefault("__compatible_ops__", {})["deepspeed_shm_comm"] = False


class DeepSpeedBackend:
    """DeepSpeed ZeRO stage 2 or 3 over the ranks of ``torchrun`` / the deepspeed launcher.

    Every rank must hold the same batch and call the same methods: forwards, backwards,
    ``step`` and ``named_tensors`` are collectives.
    """

    def __init__(
        self,
        module: PreTrainedModel,
        config: RLConfig,
        ds_config_path: Path,
        on_cuda: bool,
        steps_done: int = 0,
    ) -> None:
        import deepspeed

        if not on_cuda:
            _no_shm_comm_build(deepspeed)
        deepspeed.init_distributed(dist_backend="nccl" if on_cuda else "gloo", verbose=False)
        ds_config = load_deepspeed_config(ds_config_path, config, on_cuda)
        self.engine, _, _, _ = deepspeed.initialize(
            model=module,
            optimizer=make_optimizer(module, config),
            lr_scheduler=lambda opt: make_schedule(opt, config, steps_done),
            config=ds_config,
        )
        self.module = self.engine.module
        self.model = self.engine
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.zero3 = self.engine.zero_optimization_stage() == 3

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        self.engine.set_gradient_accumulation_boundary(last_micro_batch)
        # The trainer already normalises by the global batch; no 1/GAS rescaling.
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> tuple[float, bool]:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float("nan") if norm is None else float(norm), self.engine.was_step_applied()

    @property
    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def named_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        if not self.zero3:
            # ZeRO-2 keeps full parameters on every rank; only grads/optimizer are sharded.
            for name, p in self.module.named_parameters():
                yield name, p.detach()
            return
        import deepspeed

        for name, p in self.module.named_parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                full = p.detach().clone()
            yield name, full

    def barrier(self) -> None:
        dist.barrier()
