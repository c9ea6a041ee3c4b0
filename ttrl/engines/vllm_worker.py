"""Methods ttrl adds to every vLLM GPU worker (``worker_extension_cls``).

vLLM mixes this class into its worker class and reaches its methods through
``LLM.collective_rpc(name, args=...)``, once per tensor-parallel rank; each rank's
``model.load_weights`` takes full (unsharded) Hugging Face-named tensors and keeps its
own shard, fusing q/k/v and gate/up as needed. ``self.model_runner`` and ``self.device``
are the worker's (vLLM 0.11 ``vllm.v1.worker.gpu_worker.Worker``).

This module must not import vllm at import time: ``import ttrl`` stays vllm-free and
the class is resolved by name inside the worker process.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ttrl.engines.weights import read_checkpoint


class TTRLWorkerExtension:
    """Loads new weights into the worker's live model, in place."""

    model_runner: object
    device: torch.device

    def ttrl_load_named_tensors(self, named_tensors: list[tuple[str, torch.Tensor]]) -> int:
        """Copy ``named_tensors`` into the model; returns how many were given."""
        self.model_runner.model.load_weights(weights=named_tensors)  # type: ignore[attr-defined]
        return len(named_tensors)

    def ttrl_load_checkpoint(self, model_dir: str) -> int:
        """Stream a safetensors checkpoint straight onto this worker's GPU and load it."""
        loaded = 0

        def counted() -> object:
            nonlocal loaded
            for item in read_checkpoint(Path(model_dir), device=str(self.device)):
                loaded += 1
                yield item

        self.model_runner.model.load_weights(weights=counted())  # type: ignore[attr-defined]
        return loaded
