"""Does the RL plumbing improve the model when the reward is right? The baseline is the
shipped tiny model's pass@1 on the problems it then trains on, measured in the same run.

Samples `--votes` completions of `--problems` level-4 toy problems with the default engine
sampling, rewards each by its TRUE answer (not the majority vote: this isolates trainer,
engine and swap from the pseudo-label), runs one GRPO step, swaps the weights into the
engine, resamples, and prints pass@1 after every step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/true_reward_check.py --lr 1e-4 --steps 12
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ttrl.answers import equivalent, extract
from ttrl.config import load_settings
from ttrl.engines import Completion, load_engine
from ttrl.lm.paths import resolve_model_path
from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.trainer import Trainer
from ttrl.toy.task import generate_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--votes", type=int, default=16)
    args = ap.parse_args()

    cfg = load_settings()
    sampling = cfg.engine.sampling
    problems = list(generate_problems(11, args.problems, (4,)))
    engine = load_engine(cfg.engine)
    rl = cfg.rl.model_copy(
        update={
            "lr": args.lr,
            "temperature": sampling.temperature,
            "max_completion_tokens": sampling.max_new_tokens,
        }
    )
    trainer = Trainer(rl, resolve_model_path(cfg.engine.model))

    def sample(seed: int) -> tuple[list[list[Completion]], list[list[float]]]:
        out = engine.generate(
            [p.prompt for p in problems], args.votes, replace(sampling, seed=seed)
        )
        rewards = [
            [1.0 if equivalent(extract(c.text), str(p.answer)) else 0.0 for c in group]
            for p, group in zip(problems, out, strict=True)
        ]
        return out, rewards

    def pass_at_1(rewards: list[list[float]]) -> float:
        return sum(map(sum, rewards)) / (len(rewards) * args.votes)

    out, rewards = sample(0)
    before = pass_at_1(rewards)
    print(f"before: pass@1 {before:.3f}")
    for step in range(args.steps):
        groups = [
            RolloutGroup(
                i,
                [
                    Rollout(c.prompt_token_ids, c.token_ids, r, 0)
                    for c, r in zip(group, rs, strict=True)
                ],
            )
            for i, (group, rs) in enumerate(zip(out, rewards, strict=True))
        ]
        metrics = trainer.step(groups)
        engine.update_weights(trainer.named_tensors(), trainer.version)
        out, rewards = sample(step + 1)
        print(
            f"step {step + 1}: pass@1 {pass_at_1(rewards):.3f} (before {before:.3f}), "
            f"entropy {metrics.entropy:.3f}"
        )


if __name__ == "__main__":
    main()
