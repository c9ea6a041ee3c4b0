"""One rank of the DeepSpeed equivalence test; launched by test_deepspeed.py via torchrun.

Usage: ds_worker.py MODEL_DIR OUT_DIR CONFIG_JSON [CONFIG_JSON ...]
For each DeepSpeed config it trains 3 steps on the shared test batch and, on rank 0,
writes the metric trajectory, the final weights' checksum and how a step that overflows on
one rank was handled; every rank joins in writing
a checkpoint (a collective under ZeRO-3). Python puts this file's directory on sys.path,
so rl_helpers imports as in the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from rl_helpers import TRAJECTORY_CONFIG, make_groups, run_trajectory

from ttrl.daemon.ranks import leave
from ttrl.rl.trainer import Trainer


def poisoned_step(trainer: Trainer) -> dict[str, object]:
    """A step whose forward overflows on rank 0 only: every rank must skip it."""

    def poison(module, args, output):
        return output * float("inf")

    before = trainer.version
    hook = None
    if torch.distributed.get_rank() == 0:
        hook = trainer.module.model.layers[0].mlp.register_forward_hook(poison)
    metrics = trainer.step(make_groups(6, 5, seed=3))
    if hook is not None:
        hook.remove()
    return {
        "skipped": metrics.skipped,
        "reason": metrics.skip_reason,
        "bumped": trainer.version != before,
    }


def main() -> None:
    model_dir, out_dir, *configs = sys.argv[1:]
    torch.set_num_threads(1)
    results = {}
    for ds_json in configs:
        name = Path(ds_json).stem
        config = TRAJECTORY_CONFIG.model_copy(update={"deepspeed_config": Path(ds_json)})
        trainer = Trainer(config, model_dir)
        results[name] = run_trajectory(trainer, make_groups(6, 5, seed=3))
        results[name]["poisoned"] = poisoned_step(trainer)
        trainer.save_checkpoint(Path(out_dir) / f"ckpt-{name}")
        # Partitioned ZeRO-3 parameters keep an empty local tensor; ZeRO-2 keeps them whole.
        results[name]["partitioned"] = any(p.numel() == 0 for p in trainer.module.parameters())
        results[name]["world_size"] = trainer.backend.world_size
    if torch.distributed.get_rank() == 0:
        (Path(out_dir) / "results.json").write_text(json.dumps(results))
    leave()


if __name__ == "__main__":
    main()
