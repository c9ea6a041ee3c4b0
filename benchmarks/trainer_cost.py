"""What one update costs at a real model's size: peak memory per setup, and time per update
as the work grows.

On a random model of a shipped real architecture (``configs/models``, default the shape of
Qwen2.5-0.5B; nothing downloaded), each measurement runs in its own process so peak RSS is
its own:

1. Peak resident memory of one GRPO update, printed next to its baseline measured in the
   same run: the process that only loads the model's fp32 weights; and what the process
   still holds after the update (parameters, gradients' buffers, optimizer state). Setups:
   plain torch (AdamW), plus gradient checkpointing, DeepSpeed ZeRO-3 on 2 ranks
   (``torchrun``), and ZeRO-3 with optimizer and parameters offloaded to CPU on 2 ranks.
   Figures per rank.
2. Seconds per update (``Trainer.step``, median of ``--repeats``) over a grid of M (trained
   rollouts per update) and completion length, with the cost per trained token, next to the
   grid's smallest cell.

    OMP_NUM_THREADS=2 python benchmarks/trainer_cost.py
    python benchmarks/trainer_cost.py --skip-memory --rollouts 4 8 --lengths 32 64
    python benchmarks/trainer_cost.py --layers 2       # a quick check of the script itself
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import torch
from memory import peak_rss_gib, rss_gib
from safetensors import safe_open

from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.trainer import Trainer
from ttrl.toy.shaped import SHAPES, build_shaped_model

HERE = Path(__file__).resolve()
DEEPSPEED = HERE.parents[1] / "configs" / "deepspeed" / "zero3.json"
GROUP_SIZE = 4
PROMPT_LEN = 32
SETUPS = ("weights", "torch", "torch+gc", "zero3x2", "zero3-offload x2")


def parameter_count(model_dir: Path) -> int:
    """Parameters stored in the checkpoint (a tied output layer is stored once)."""
    count = 0
    for file in model_dir.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            count += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return count


def make_groups(m: int, completion_len: int, vocab: int, seed: int = 0) -> list[RolloutGroup]:
    """``m`` rollouts in groups of :data:`GROUP_SIZE` with rewards 0/1 (every group trains),
    random tokens that never hit EOS (id 1), each completion exactly ``completion_len`` long."""
    g = torch.Generator().manual_seed(seed)
    groups = []
    for i in range(m // GROUP_SIZE):
        prompt = torch.randint(3, vocab, (PROMPT_LEN,), generator=g).tolist()
        rollouts = [
            Rollout(
                prompt,
                torch.randint(3, vocab, (completion_len,), generator=g).tolist(),
                float(j % 2),
                0,
            )
            for j in range(GROUP_SIZE)
        ]
        groups.append(RolloutGroup(i, rollouts))
    return groups


def rl_config(gradient_checkpointing: bool = False, deepspeed: Path | None = None) -> RLConfig:
    return RLConfig(
        train_samples=None,
        lr=1e-6,
        micro_batch_tokens=4096,
        device="cpu",
        gradient_checkpointing=gradient_checkpointing,
        deepspeed_config=deepspeed,
    )


def offload_config(out: Path) -> Path:
    """configs/deepspeed/zero3.json with optimizer state and parameters offloaded to CPU.

    The trainer brings its own torch AdamW; DeepSpeed refuses it with offload unless told
    (its DeepSpeedCPUAdam is a compiled op; on a CPU host both run on the same cores)."""
    config = json.loads(DEEPSPEED.read_text())
    config["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
    config["zero_optimization"]["offload_param"] = {"device": "cpu"}
    config["zero_force_ds_cpu_optimizer"] = False
    out.write_text(json.dumps(config))
    return out


def child(setup: str, model_dir: Path, m: int, completion_len: int, vocab: int) -> None:
    """One setup's update in this process; prints a JSON line with its peak RSS."""
    torch.set_num_threads(1 if "x2" in setup else torch.get_num_threads())
    if setup == "weights":
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        seconds = 0.0
    else:
        if setup.startswith("zero3"):
            ds = DEEPSPEED
            if "offload" in setup:
                ds = offload_config(model_dir.parent / f"offload-{os.getpid()}.json")
            config = rl_config(deepspeed=ds)
        else:
            config = rl_config(gradient_checkpointing=setup == "torch+gc")
        trainer = Trainer(config, model_dir)
        begin = time.perf_counter()
        trainer.step(make_groups(m, completion_len, vocab))
        seconds = time.perf_counter() - begin
    rank = int(os.environ.get("RANK", 0))
    line = {"setup": setup, "rank": rank, "peak": peak_rss_gib(), "now": rss_gib(), "s": seconds}
    # One write per line: two ranks share the pipe, and buffered prints of theirs interleaved
    # into one line once.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(line) + "\n").encode())
    if setup.startswith("zero3"):
        from ttrl.daemon.ranks import leave

        leave()


def run_setup(setup: str, model_dir: Path, args: argparse.Namespace) -> list[dict]:
    """Run ``setup`` in fresh process(es); the JSON lines they print, one per rank."""
    own = [
        str(HERE),
        "--child",
        setup,
        "--model-dir",
        str(model_dir),
        "--rollouts",
        str(args.memory_m),
        "--lengths",
        str(args.memory_length),
        "--vocab",
        str(args.vocab),
    ]
    if "x2" in setup:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
        command += ["--master-port", str(29600 + SETUPS.index(setup)), *own]
    else:
        command = [sys.executable, *own]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not lines:
        errors = [x for x in done.stderr.splitlines() if "Error" in x or "Exception" in x]
        tail = "\n".join(errors[-3:] or done.stderr.strip().splitlines()[-6:])
        print(f"  {setup}: failed (exit {done.returncode}):\n{tail}")
        return []
    return sorted(lines, key=lambda x: x["rank"])


def memory(model_dir: Path, params: int, args: argparse.Namespace) -> None:
    setups = [s for s in SETUPS if "zero3" not in s or find_spec("deepspeed")]
    print(
        f"peak RSS of one update, M={args.memory_m} rollouts x {args.memory_length} tokens "
        f"(each setup in its own process; baseline: the fp32 weights loaded alone)"
    )
    base = None
    for setup in setups:
        for line in run_setup(setup, model_dir, args):
            base = base or line["peak"]
            per_param = line["peak"] * 2**30 / params
            print(
                f"  {setup:<17} rank {line['rank']}: {line['peak']:6.2f} GiB  "
                f"{line['peak'] / base:5.2f}x the weights alone  {per_param:5.1f} B/param  "
                f"after the update {line['now']:6.2f} GiB  (update {line['s']:6.1f} s)"
            )


def grid(model_dir: Path, args: argparse.Namespace) -> None:
    trainer = Trainer(rl_config(), model_dir)
    trainer.step(make_groups(GROUP_SIZE, args.lengths[0], args.vocab))  # warm-up
    print(
        f"seconds per update (Trainer.step, plain torch, median of {args.repeats}) by M "
        f"trained rollouts and completion length; prompt {PROMPT_LEN} tokens"
    )
    print("  " + "M \\ length".ljust(12) + "".join(f"{n:>22}" for n in args.lengths))
    smallest = None
    for m in args.rollouts:
        cells = []
        for n in args.lengths:
            groups = make_groups(m, n, args.vocab)
            times = []
            for _ in range(args.repeats):
                begin = time.perf_counter()
                trainer.step(groups)
                times.append(time.perf_counter() - begin)
            seconds = statistics.median(times)
            per_token = seconds / (m * n) * 1000
            smallest = smallest or seconds
            cells.append(f"{seconds:7.2f} s {per_token:5.1f} ms/tok {seconds / smallest:4.1f}x")
        print("  " + str(m).ljust(12) + "".join(f"{c:>22}" for c in cells))
    print("  (x = seconds relative to the smallest cell, measured in the same run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=SHAPES, default=SHAPES[0])
    parser.add_argument("--layers", type=int, default=None, help="override the depth")
    parser.add_argument("--rollouts", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--memory-m", type=int, default=8)
    parser.add_argument("--memory-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model_dir, args.rollouts[0], args.lengths[0], args.vocab)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_shaped_model(
            Path(tmp) / "model", args.shape, layers=args.layers, dtype=torch.float32
        )
        config = json.loads((model_dir / "config.json").read_text())
        args.vocab = config["vocab_size"]
        params = parameter_count(model_dir)
        print(
            f"model {args.shape} (layers {config['num_hidden_layers']}), CPU, torch threads "
            f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"
        )
        if not args.skip_memory:
            memory(model_dir, params, args)
        if not args.skip_grid:
            grid(model_dir, args)


if __name__ == "__main__":
    main()
