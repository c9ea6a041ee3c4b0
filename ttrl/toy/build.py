"""Build the shipped tiny model: ``python -m ttrl.toy.build`` (or ``ttrl toy build``).

Trains per :class:`~ttrl.toy.train.TrainConfig` and writes a directory that
``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained`` load like any hub model, with
the default sampling in ``generation_config.json`` and how it was built in ``build.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerFast

from ttrl.toy.train import TrainConfig, train

SHIPPED_DIR = Path(__file__).resolve().parent / "model"

# The default sampling of the tiny model. Trained on solutions that add in any order, it
# takes different paths to one answer at the plain softmax and slips on different steps on
# each: its majority beats its greedy answer at 1.0 (numbers in docs/tiny-model.md).
DEFAULT_TEMPERATURE = 1.0
# A model trained on left-to-right solutions only (TrainConfig.any_order=False) follows one
# path: at 1.0 it samples its greedy answer; at 1.5 its samples slip digits and spread
# over wrong answers while the right one stays the most frequent.
IN_ORDER_TEMPERATURE = 1.5
MAX_NEW_TOKENS = 80  # the longest solution of the task has 57 characters


def generation_config(
    tokenizer: PreTrainedTokenizerFast, temperature: float = DEFAULT_TEMPERATURE
) -> GenerationConfig:
    """Default decoding of the tiny model, saved next to its weights."""
    return GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=MAX_NEW_TOKENS,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def save(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    out_dir: Path,
    info: dict[str, object],
    temperature: float = DEFAULT_TEMPERATURE,
) -> None:
    """Write model (safetensors), tokenizer, generation config (sampling at ``temperature``)
    and ``build.json`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation_config(tokenizer, temperature)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "build.json").write_text(json.dumps(info, indent=2) + "\n")


def build(cfg: TrainConfig, out_dir: Path = SHIPPED_DIR, progress: bool = True) -> Path:
    """Train a tiny model per ``cfg`` and save it to ``out_dir``; returns ``out_dir``."""
    losses: list[float] = []
    start = time.perf_counter()
    model, tokenizer = train(cfg, progress=progress, on_step=lambda _, loss: losses.append(loss))
    tail = losses[-50:]
    info = {
        "train_config": asdict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(tail) / len(tail),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    save(
        model,
        tokenizer,
        out_dir,
        info,
        DEFAULT_TEMPERATURE if cfg.any_order else IN_ORDER_TEMPERATURE,
    )
    return out_dir


if __name__ == "__main__":
    import typer

    from ttrl.toy.cli import build_command

    typer.run(build_command)
