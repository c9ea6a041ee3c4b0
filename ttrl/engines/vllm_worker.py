"""What ttrl adds to every vLLM worker (``worker_extension_cls``).

vLLM mixes this class into its worker class and reaches its methods through
``LLM.collective_rpc(name, args=...)``, once per tensor-parallel rank. Weights need no
method here: the worker's own ``reload_weights`` (vLLM's layerwise in-place reload) takes
them, which also works on the CPU worker, whose linear layers are repacked after loading.

This module must not import vllm at import time: ``import ttrl`` stays vllm-free and
the class is resolved by name inside the worker process.
"""

from __future__ import annotations

import torch


class TTRLWorkerExtension:
    """Seeds the worker's sampler."""

    def ttrl_seed(self, seed: int) -> None:
        """Reseed the global generators the sampler draws from (CPU and CUDA).

        Requests without a seed of their own sample from these, so the next
        ``generate`` of the same prompts, in the same order, draws the same tokens. Per-request
        seeds are not used: the CPU worker crashes on them in some batches (vLLM 0.32,
        "CPU Generator does not use offset").
        """
        torch.manual_seed(seed)
