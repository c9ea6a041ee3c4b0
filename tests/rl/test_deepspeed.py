"""DeepSpeed ZeRO-2 and ZeRO-3 on 2 CPU ranks (gloo) follow plain torch step for step."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rl_helpers import TRAJECTORY_CONFIG, make_groups, run_trajectory
from transformers import AutoModelForCausalLM

from ttrl.rl.trainer import Trainer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("deepspeed") is None, reason="needs ttrl[deepspeed]"
    ),
]
CONFIGS = Path(__file__).parents[2] / "configs" / "deepspeed"


def _zero3_that_partitions_everything(tmp_path: Path) -> Path:
    """The shipped ZeRO-3 JSON, but with every parameter partitioned: the tiny test model's
    tensors are all under the default persistence threshold and would stay whole."""
    ds = json.loads((CONFIGS / "zero3.json").read_text())
    ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    path = tmp_path / "zero3.json"
    path.write_text(json.dumps(ds))
    return path


def test_zero2_and_zero3_match_plain_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    zero3 = _zero3_that_partitions_everything(tmp_path)
    worker = Path(__file__).with_name("ds_worker.py")
    cmd = [
        torchrun, "--standalone", "--nproc_per_node", "2", str(worker),
        str(tiny_model_dir), str(tmp_path), str(CONFIGS / "zero2.json"), str(zero3),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())

    plain_trainer = Trainer(TRAJECTORY_CONFIG, tiny_model_dir)
    plain = run_trajectory(plain_trainer, make_groups(6, 5, seed=3))
    plain_weights = dict(plain_trainer.named_tensors())
    assert len(set(plain["loss"])) == 3  # the loss moves, so matching it means something
    for name in ("zero2", "zero3"):
        ds = results[name]
        assert ds["world_size"] == 2
        assert ds["partitioned"] == (name == "zero3")
        # Rank 0's non-finite loss skipped the update on both ranks; the weights compared
        # below are those from before it.
        assert ds["poisoned"] == {"skipped": True, "reason": "non-finite loss", "bumped": False}
        for key in ("loss", "entropy", "kl", "grad_norm", "weight_sq"):
            assert ds[key] == pytest.approx(plain[key], rel=1e-4), (name, key)
        # The checkpoint holds the full (gathered) weights, equal to plain torch's up to
        # float reordering (which Adam amplifies on near-zero gradients: 12 steps of 3e-3).
        saved = AutoModelForCausalLM.from_pretrained(tmp_path / f"ckpt-{name}").state_dict()
        for pname, tensor in plain_weights.items():
            torch.testing.assert_close(saved[pname], tensor, rtol=1e-4, atol=1e-4)
