"""Rollout engines: sample N completions per prompt and take new weights in place.

``import ttrl.engines`` stays light (no torch, transformers or vllm); the backends load
on first use: ``load_engine(cfg)``, or ``from ttrl.engines.hf import HFEngine``. The model
files, tokenizer and stop rule under both backends are :mod:`ttrl.lm`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ttrl.engines.base import (
    Completion,
    Engine,
    EngineUnavailable,
    FinishReason,
    SamplingParams,
    WeightUpdateError,
    released,
)
from ttrl.engines.config import EngineConfig, VLLMOptions

if TYPE_CHECKING:
    from ttrl.engines.hf import HFEngine
    from ttrl.engines.vllm import VLLMEngine

__all__ = [
    "Completion",
    "Engine",
    "EngineConfig",
    "EngineUnavailable",
    "FinishReason",
    "HFEngine",
    "SamplingParams",
    "VLLMEngine",
    "VLLMOptions",
    "WeightUpdateError",
    "load_engine",
    "released",
]


def load_engine(cfg: EngineConfig, version: int = 0) -> Engine:
    """Build the engine ``cfg.kind`` names, serving ``cfg.model`` as ``version``; vllm is
    imported only for ``kind == "vllm"``."""
    if cfg.kind == "vllm":
        from ttrl.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(cfg, version)
    from ttrl.engines.hf import HFEngine

    return HFEngine.from_config(cfg, version)


def __getattr__(name: str) -> object:
    # Lazy backends: the names are importable from ttrl.engines without paying for them.
    if name == "HFEngine":
        from ttrl.engines.hf import HFEngine

        return HFEngine
    if name == "VLLMEngine":
        from ttrl.engines.vllm import VLLMEngine

        return VLLMEngine
    raise AttributeError(f"module 'ttrl.engines' has no attribute {name!r}")
