"""Randomly initialised models of a real model's shape, for cost measurements offline.

``configs/models/<name>.json`` holds the architecture of a real checkpoint (today
Qwen2.5-0.5B); :func:`build_shaped_model` writes a directory that every loader of ttrl
(HFEngine, VLLMEngine, the trainer) takes like a hub model: that config with random
weights and the tiny model's character tokenizer. Its answers are noise; its costs
(weight swap, optimizer step, memory, sampling) are those of the real model.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from ttrl.toy.tokenizer import build_tokenizer

SHAPES = ("qwen2.5-0.5b-shaped",)


def shaped_config(name: str = SHAPES[0], layers: int | None = None) -> Qwen2Config:
    """The shipped architecture ``name``; ``layers`` overrides its depth (a quick check).

    Raises:
        ValueError: no such shape shipped.
    """
    if name not in SHAPES:
        raise ValueError(f"unknown model shape {name!r}; shipped: {', '.join(SHAPES)}")
    raw = json.loads(files("ttrl.configs").joinpath(f"models/{name}.json").read_text())
    raw = {k: v for k, v in raw.items() if not k.startswith("_")}
    if layers is not None:
        raw["num_hidden_layers"] = layers
    tokenizer = build_tokenizer()
    return Qwen2Config(
        **raw,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def build_shaped_model(
    out_dir: Path,
    name: str = SHAPES[0],
    *,
    layers: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write a random model of shape ``name`` to ``out_dir`` (safetensors, ``dtype``)."""
    config = shaped_config(name, layers)
    torch.manual_seed(seed)
    # transformers' @wraps(Module.to) hides the bound self from mypy
    model = Qwen2ForCausalLM(config).to(dtype)  # type: ignore[arg-type]
    tokenizer = build_tokenizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(out_dir)
    return out_dir
