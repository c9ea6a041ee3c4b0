"""The GPU rollout engine: an in-process ``vllm.LLM`` colocated with the trainer.

Targets vLLM 0.11 (:data:`TARGET_VLLM`), written against its documentation and source:
``LLM(worker_extension_cls=...)`` + ``LLM.collective_rpc`` for in-place weight loading
(the RLHF examples), ``LLM.sleep(level)`` / ``LLM.wake_up(tags)`` (sleep mode, tags
``"weights"`` and ``"kv_cache"``), ``LLM.reset_prefix_cache`` after every swap, prompts
as ``{"prompt_token_ids": ...}`` (``TokensPrompt``), ``SamplingParams(n, temperature,
top_p, top_k, max_tokens, seed, logprobs, stop_token_ids)``. These APIs move between
releases (0.17 added a native weight-transfer API); other versions log a warning.

UNVALIDATED: this adapter has not been run yet (no GPU where it was written); the tests in
tests/engines/test_engines_gpu.py run it wherever vllm and CUDA are present.

With one GPU (``tensor_parallel_size == 1``) the engine core runs in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so ``collective_rpc`` hands the trainer's tensors
to the worker by reference: no copy, no disk. With tensor parallelism the tensors are
serialised to each worker process (moved to CPU first); prefer :meth:`load_checkpoint`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from transformers import GenerationConfig

from ttrl.engines.base import Completion, EngineUnavailable, SamplingParams
from ttrl.engines.config import EngineConfig, VLLMOptions
from ttrl.engines.model_files import check_model_dir
from ttrl.engines.paths import resolve_model_path
from ttrl.engines.tokens import PromptCodec, check_prompts
from ttrl.engines.weights import (
    check_checkpoint,
    check_finite,
    check_named_tensors,
    model_weight_specs,
)

TARGET_VLLM = "0.11"
WORKER_EXTENSION = "ttrl.engines.vllm_worker.TTRLWorkerExtension"


def import_vllm() -> Any:
    """Import vllm, or explain how to get it; warn when its version is not the target.

    Raises:
        EngineUnavailable: vllm is not installed.
    """
    try:
        import vllm
    except ImportError as error:
        raise EngineUnavailable(
            "engine.kind='vllm' needs vLLM, which runs on CUDA hosts only: "
            "pip install 'ttrl[vllm]' there, or use engine.kind='hf'"
        ) from error
    if not vllm.__version__.startswith(TARGET_VLLM + "."):
        logger.warning(
            f"vllm {vllm.__version__} installed; ttrl's adapter targets {TARGET_VLLM}.x "
            "(see ttrl/engines/vllm.py for the APIs it relies on)"
        )
    return vllm


class VLLMEngine:
    """Rollouts from vLLM with in-place weight swaps; implements :class:`~ttrl.engines.Engine`."""

    def __init__(
        self,
        model: str | Path = "builtin:tiny",
        *,
        dtype: str = "auto",
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        options: VLLMOptions | None = None,
        trust_remote_code: bool = False,
        version: int = 0,
    ) -> None:
        vllm = import_vllm()
        self.options = options or VLLMOptions()
        path = resolve_model_path(model)
        check_model_dir(path)
        if self.options.tensor_parallel_size == 1:
            # In-process engine core: collective_rpc then reaches the worker in this
            # process and passes tensors by reference.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        generation_config = (
            GenerationConfig.from_pretrained(path)
            if (path / "generation_config.json").is_file()
            else None
        )
        self.codec = PromptCodec.load(
            path,
            generation_config,
            use_chat_template=use_chat_template,
            system_prompt=system_prompt,
            trust_remote_code=trust_remote_code,
        )
        self._specs = model_weight_specs(path, trust_remote_code)
        self._sampling_cls = vllm.SamplingParams
        self.llm = vllm.LLM(
            model=str(path),
            tokenizer=str(path),
            dtype="bfloat16" if dtype == "auto" else dtype,
            load_format="safetensors",  # never the pickle fallback of "auto"
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=self.options.tensor_parallel_size,
            gpu_memory_utilization=self.options.gpu_memory_utilization,
            max_model_len=self.options.max_model_len,
            enable_prefix_caching=self.options.enable_prefix_caching,
            enable_sleep_mode=self.options.enable_sleep_mode,
            enforce_eager=self.options.enforce_eager,
            seed=self.options.seed,
            worker_extension_cls=WORKER_EXTENSION,
            # Sample exactly as SamplingParams says, like HFEngine: no model defaults
            # (e.g. a repetition penalty) slipped into RL rollouts.
            generation_config="vllm",
        )
        self._version = version  # a resumed checkpoint keeps its number
        # "awake", "asleep", or "weights-only": woken from level-2 sleep, KV cache still
        # released until new weights arrive (the order vLLM's sleep-mode docs advise).
        self._state = "awake"
        self._lock = threading.RLock()
        logger.info(f"VLLMEngine: {path}, tp={self.options.tensor_parallel_size}")

    @classmethod
    def from_config(cls, cfg: EngineConfig, version: int = 0) -> VLLMEngine:
        """Build from the ``engine:`` section; ``version`` numbers the weights of ``cfg.model``."""
        return cls(
            cfg.model,
            dtype=cfg.dtype,
            use_chat_template=cfg.use_chat_template,
            system_prompt=cfg.system_prompt,
            options=cfg.vllm,
            trust_remote_code=cfg.trust_remote_code,
            version=version,
        )

    @property
    def version(self) -> int:
        """The weight version now served (as given at construction, then by each swap)."""
        return self._version

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt token ids exactly as :meth:`generate` sends them (same as HFEngine)."""
        return self.codec.encode(prompts)

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """Sample ``n`` completions of every prompt; result ``[i][j]`` is sample j of prompt i.

        With a seed, prompt i uses seeds ``seed + i * n + j`` (vLLM adds j per sample), so
        identical prompts still get independent samples.
        """
        check_prompts(prompts, n)
        with self._lock:
            if self._state != "awake":
                raise RuntimeError(
                    f"VLLMEngine is {self._state}; call wake() (and, after a level-2 sleep, "
                    "update_weights or load_checkpoint) first"
                )
            version = self._version
            prompt_ids = self.encode(prompts)
            rows = 1 if sampling.greedy else n
            params = [self._params(sampling, rows, i * n) for i in range(len(prompt_ids))]
            outputs = self.llm.generate(
                [{"prompt_token_ids": ids} for ids in prompt_ids],
                sampling_params=params,
                use_tqdm=False,
            )
        return [
            self._completions(ids, output.outputs, n, version)
            for ids, output in zip(prompt_ids, outputs, strict=True)
        ]

    def update_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int
    ) -> None:
        """Load ``named_tensors`` (HF ``state_dict`` names) into every worker, in place.

        Raises:
            WeightUpdateError: unknown name, wrong shape, integer-for-float, NaN/inf.
        """
        start = time.perf_counter()
        with self._lock:
            tensors = check_named_tensors(self._specs, named_tensors)
            check_finite(tensors)
            if self.options.tensor_parallel_size > 1:
                tensors = {name: t.cpu() for name, t in tensors.items()}
            self._before_load()
            self.llm.collective_rpc("ttrl_load_named_tensors", args=(list(tensors.items()),))
            self._after_load(version)
        logger.info(
            f"VLLMEngine: now serving version {version} "
            f"({len(tensors)} tensors in {time.perf_counter() - start:.3f}s)"
        )

    def load_checkpoint(self, model_dir: str | Path, version: int) -> None:
        """Serve a safetensors checkpoint directory; each worker reads it onto its GPU.

        Names and shapes are checked from the file headers first. For hosts that do not
        train: the trainer writes the checkpoint, this host loads it in place.
        """
        model_dir = Path(model_dir)
        with self._lock:
            check_checkpoint(self._specs, model_dir)
            self._before_load()
            self.llm.collective_rpc("ttrl_load_checkpoint", args=(str(model_dir),))
            self._after_load(version)

    def sleep(self) -> None:
        """Release GPU memory for training: ``LLM.sleep(options.sleep_level)``."""
        with self._lock:
            if not self.options.enable_sleep_mode or self._state == "asleep":
                return
            self.llm.sleep(level=self.options.sleep_level)
            self._state = "asleep"

    def wake(self) -> None:
        """Regain GPU memory; after a level-2 sleep only the weights, until new ones load."""
        with self._lock:
            if self._state != "asleep":
                return
            if self.options.sleep_level == 2:
                # Level 2 dropped the weights: waking the KV cache now would only raise
                # peak memory during the coming load.
                self.llm.wake_up(tags=["weights"])
                self._state = "weights-only"
            else:
                self.llm.wake_up()
                self._state = "awake"

    def _before_load(self) -> None:
        if self._state == "asleep":
            self.wake()

    def _after_load(self, version: int) -> None:
        if self._state == "weights-only":
            self.llm.wake_up(tags=["kv_cache"])
            self._state = "awake"
        # Cached prefixes hold keys/values computed by the old weights.
        self.llm.reset_prefix_cache()
        self._version = version

    def _params(self, sampling: SamplingParams, n: int, seed_offset: int) -> Any:
        return self._sampling_cls(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else -1,
            max_tokens=sampling.max_new_tokens,
            seed=None if sampling.seed is None else sampling.seed + seed_offset,
            logprobs=0 if sampling.logprobs else None,
            stop_token_ids=self.codec.stop_ids,
        )

    def _completions(
        self, prompt_ids: list[int], outputs: Sequence[Any], n: int, version: int
    ) -> list[Completion]:
        if len(outputs) == 1 and n > 1:
            outputs = list(outputs) * n
        completions = []
        for output in outputs:
            ids, finish, text = self.codec.finish(list(output.token_ids))
            if finish == "length" and output.finish_reason == "stop":
                finish = "stop"  # vLLM stopped on a token it left out of token_ids
            logprobs = None
            if output.logprobs is not None:
                # One {token_id: Logprob} dict per step; logprobs=0 returns the sampled one.
                logprobs = [step[t].logprob for t, step in zip(ids, output.logprobs, strict=False)]
            completions.append(
                Completion(
                    text=text,
                    prompt_token_ids=list(prompt_ids),
                    token_ids=ids,
                    finish_reason=finish,
                    model_version=version,
                    logprobs=logprobs,
                )
            )
        return completions
