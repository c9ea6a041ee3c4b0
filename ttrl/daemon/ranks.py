"""A learner over several ranks (``torchrun`` / the deepspeed launcher, DeepSpeed ZeRO).

Rank 0 is the daemon: it reads the database, runs the guard and publishes versions. The
trainer's methods are collectives, so every call rank 0 makes on its trainer is first
broadcast to the other ranks, which replay it on theirs (:func:`follow`). Nothing but
rank 0 touches the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from loguru import logger

# Rank 0 may wait for work for hours (an idle queue); the other ranks wait in a broadcast.
IDLE_TIMEOUT = timedelta(days=30)


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when not launched."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_process_group(on_cuda: bool) -> None:
    """The process group, with a timeout long enough for an idle queue."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_cuda else "gloo", timeout=IDLE_TIMEOUT)


def leave() -> None:
    """Meet the other ranks, then destroy the process group.

    Every rank calls this on its way out. A gloo group left to the interpreter's teardown
    can abort the process ("terminate called without an active exception", exit -6) while
    a peer still talks to it, which turns a clean stop into a failed one.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _broadcast(command: tuple[Any, ...] | None) -> tuple[Any, ...]:
    import torch.distributed as dist

    box = [command]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


class MirroredTrainer:
    """Rank 0's trainer; each call is replayed by the other ranks' :func:`follow`."""

    def __init__(self, make: Callable[[Path, int], Any], model_dir: Path, version: int) -> None:
        _broadcast(("build", str(model_dir), version))
        self.trainer = make(model_dir, version)

    @property
    def version(self) -> int:
        return self.trainer.version

    def step(self, groups: Any) -> Any:
        _broadcast(("step", groups))
        return self.trainer.step(groups)

    def save_checkpoint(self, path: str | Path) -> Path:
        _broadcast(("save", str(path)))
        return self.trainer.save_checkpoint(path)

    @property
    def shares_weights(self) -> bool:
        return bool(self.trainer.shares_weights)

    def named_tensors(self) -> Iterator[tuple[str, Any]]:
        _broadcast(("tensors",))
        return self.trainer.named_tensors()

    def close(self) -> None:
        _broadcast(("stop",))
        leave()


def follow(make: Callable[[Path, int], Any]) -> None:
    """The loop of ranks > 0: replay rank 0's trainer calls until it says stop."""
    trainer = None
    while True:
        command = _broadcast(None)
        name, args = command[0], command[1:]
        if name == "stop":
            logger.info("rank 0 stopped; leaving")
            leave()
            return
        if name == "build":
            trainer = None  # release the old weights first (a rollback rebuilds)
            trainer = make(Path(args[0]), args[1])
        elif trainer is None:
            raise RuntimeError(f"rank 0 sent {name!r} before building the trainer")
        elif name == "step":
            trainer.step(args[0])
        elif name == "save":
            trainer.save_checkpoint(args[0])
        elif name == "tensors":
            for _ in trainer.named_tensors():  # a collective under ZeRO-3: iterate it all
                pass
