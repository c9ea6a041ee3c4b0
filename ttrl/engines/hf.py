"""The embedded rollout engine: transformers ``generate`` with a KV cache, CPU or CUDA.

Prompts are tokenized once, packed into length-grouped batches under a token budget
(:func:`ttrl.engines.batching.plan_batches`), left-padded, and sampled with a
``GenerationConfig`` built from :class:`SamplingParams` alone (the model's own
generation defaults, e.g. a repetition penalty, would bias RL rollouts). New weights are
copied into the live module's tensors (:class:`~ttrl.engines.live_weights.LiveWeights`).

Left padding is safe because ``GenerationMixin.prepare_inputs_for_generation``
(transformers 5, used as is by Llama and Qwen2) derives ``position_ids`` from the
attention mask (``cumsum - 1``), so a padded row sees the positions it would see alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from loguru import logger
from transformers import GenerationConfig, LogitsProcessorList

from ttrl.engines.base import Completion, NamedTensors, SamplingParams
from ttrl.engines.batching import plan_batches
from ttrl.engines.config import EngineConfig
from ttrl.engines.hf_sampling import SampledLogprobs, seeded
from ttrl.engines.live_weights import LiveWeights
from ttrl.engines.serving import CodecEngine, Sample, common_options, completions
from ttrl.engines.tokens import PromptCodec, check_prompts
from ttrl.lm.device import resolve_device, resolve_dtype
from ttrl.lm.load import load_causal_lm
from ttrl.lm.padding import left_pad
from ttrl.lm.paths import resolve_model_path
from ttrl.lm.tensors import read_checkpoint


class HFEngine(CodecEngine):
    """Rollouts from a local transformers causal LM; implements :class:`~ttrl.engines.Engine`.

    Example:
        >>> engine = HFEngine("builtin:tiny")
        >>> groups = engine.generate(["What is 2+3?"], n=4, sampling=SamplingParams(seed=0))
        >>> len(groups[0])
        4
    """

    def __init__(
        self,
        model: str | Path = "builtin:tiny",
        *,
        device: str = "auto",
        dtype: str = "auto",
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        max_batch_tokens: int = 65536,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        version: int = 0,
    ) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens={max_batch_tokens} must be >= 1")
        path = resolve_model_path(model)
        self.device = resolve_device(device, "engine.device")
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_batch_tokens = max_batch_tokens
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = load_causal_lm(
            path, trust_remote_code=trust_remote_code, dtype=self.dtype, **extra
        )
        # transformers wraps PreTrainedModel.to in functools.wraps: mypy sees no bound self.
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        codec = PromptCodec.load(
            path,
            self.model.generation_config,
            self.model.config,
            use_chat_template=use_chat_template,
            system_prompt=system_prompt,
            trust_remote_code=trust_remote_code,
        )
        super().__init__(codec, version)
        # Sample exactly as SamplingParams says: transformers 5 fills every option a
        # GenerationConfig leaves unset from the model's own (e.g. a repetition penalty),
        # so the model keeps only the library's neutral defaults once its stop ids are read;
        # its own stay readable as ``generation_defaults`` (e.g. for ``ttrl eval``).
        self.generation_defaults: GenerationConfig = self.model.generation_config
        self.model.generation_config = GenerationConfig()
        self.pad_id = codec.pad_id
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._asleep = False
        self._weights = LiveWeights(self.model)
        logger.info(f"HFEngine: {path} on {self.device} ({self.dtype}), chat template {codec.chat}")

    @classmethod
    def from_config(cls, cfg: EngineConfig, version: int = 0) -> HFEngine:
        """Build from the ``engine:`` section; ``version`` numbers the weights of ``cfg.model``."""
        return cls(
            cfg.model,
            device=cfg.device,
            max_batch_tokens=cfg.max_batch_tokens,
            attn_implementation=cfg.attn_implementation,
            version=version,
            **common_options(cfg),
        )

    @property
    def needs_weights(self) -> bool:
        """Always False: sleep moves the weights to CPU, it never drops them."""
        return False

    @property
    def asleep(self) -> bool:
        """Whether the weights are offloaded to CPU (CUDA only)."""
        return self._asleep

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """Sample ``n`` completions of every prompt; result ``[i][j]`` is sample j of prompt i.

        Like vLLM at ``max_model_len``, a prompt whose ``max_new_tokens`` would run past
        the model's positions gets only the room left, and ends with ``"length"``.

        Raises:
            TypeError / ValueError: bad prompts or ``n`` (see :func:`check_prompts`), or a
                prompt that fills all of the model's positions.
            RuntimeError: the engine is asleep.
        """
        check_prompts(prompts, n)
        with self._lock:
            if self._asleep:
                raise RuntimeError("HFEngine is asleep (sleep() freed the GPU); call wake() first")
            version = self._version
            prompt_ids = self.encode(prompts)
            # Greedy samples are all identical: decode once, copy n times.
            rows = 1 if sampling.greedy else n
            samples: list[list[Sample]] = [[] for _ in prompt_ids]
            with seeded(sampling.seed, self.device):
                for budget, indices in self._new_token_budgets(prompt_ids, sampling).items():
                    step = replace(sampling, max_new_tokens=budget)
                    lengths = [len(prompt_ids[i]) for i in indices]
                    for batch in plan_batches(lengths, rows, budget, self.max_batch_tokens):
                        owners = [indices[k] for k, count in batch for _ in range(count)]
                        outputs = self._generate_batch([prompt_ids[i] for i in owners], step)
                        for owner, sample in zip(owners, outputs, strict=True):
                            samples[owner].append(sample)
        return [
            completions(ids, group, n, version)
            for ids, group in zip(prompt_ids, samples, strict=True)
        ]

    def update_weights(
        self, named_tensors: NamedTensors, version: int, *, share: bool = False
    ) -> None:
        """Serve ``named_tensors`` (``state_dict`` names) as ``version``.

        By default they are copied into the live model, every tensor checked before the
        first copy, so a refused update changes nothing. ``share=True`` serves the caller's
        tensors themselves wherever they already sit on the engine's device in its dtype:
        no copy and no second set of weights in memory. It is for the co-located trainer
        (``Trainer.shares_weights``), whose parameters change only while the engine is
        released for training (:func:`~ttrl.engines.base.released`) and never by a
        non-finite step, so shared tensors are not scanned for NaN/inf (names and shapes
        are checked as always). Any later update that is not shared first gives the engine
        its own copies again, so it never writes into the caller's tensors.

        Raises:
            WeightUpdateError: unknown name, wrong shape, integer-for-float, NaN/inf.
        """
        start = time.perf_counter()
        with self._lock:
            count, shared = self._weights.swap(named_tensors, share)
            if self.device.type == "cuda" and not self._asleep:
                torch.cuda.synchronize(self.device)
            self._version = version
        how = f"{shared} shared, {count - shared} copied" if share else "copied"
        logger.info(
            f"HFEngine: now serving version {version} "
            f"({count} tensors {how} in {time.perf_counter() - start:.3f}s)"
        )

    def load_checkpoint(self, model_dir: str | Path, version: int) -> None:
        """Serve the weights of a safetensors checkpoint directory as ``version``.

        For hosts that do not train: the trainer's checkpoint is read into memory, then
        swapped in like :meth:`update_weights` (same checks, same all-or-nothing).
        """
        self.update_weights(read_checkpoint(Path(model_dir)), version)

    def sleep(self) -> None:
        """Offload the weights to CPU and free the GPU for training (no-op on CPU)."""
        with self._lock:
            if self.device.type != "cuda" or self._asleep:
                return
            # Asleep before the move: wake() moves back whatever a failed move left behind.
            self._asleep = True
            self.model.to("cpu")  # type: ignore[arg-type]  # (see __init__)
            self._weights.moved()  # after the move only: the move gave every weight a copy
            torch.cuda.empty_cache()

    def wake(self) -> None:
        """Move the weights back to the GPU after :meth:`sleep`."""
        with self._lock:
            if not self._asleep:
                return
            self.model.to(self.device)  # type: ignore[arg-type]  # (see __init__)
            self._asleep = False

    def _new_token_budgets(
        self, prompt_ids: list[list[int]], sampling: SamplingParams
    ) -> dict[int, list[int]]:
        """Prompt indices grouped by how many new tokens each may get (usually one group)."""
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(prompt_ids):
            room = sampling.max_new_tokens
            if self.max_positions is not None:
                room = min(room, self.max_positions - len(ids))
            if room < 1:
                raise ValueError(
                    f"prompts[{i}] has {len(ids)} tokens, leaving no room in the model's "
                    f"{self.max_positions} positions; shorten the prompt"
                )
            groups.setdefault(room, []).append(i)
        return groups

    def generation_config(self, sampling: SamplingParams) -> GenerationConfig:
        """The ``GenerationConfig`` :meth:`generate` decodes with (the model's own defaults
        are deliberately ignored)."""
        options: dict[str, object] = {
            "max_new_tokens": sampling.max_new_tokens,
            "eos_token_id": self.codec.stop_ids,
            "pad_token_id": self.pad_id,
            "use_cache": True,
            "do_sample": not sampling.greedy,
        }
        if not sampling.greedy:
            # top_k is passed even when 0: GenerationConfig's own default is 50.
            options.update(
                temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k
            )
        return GenerationConfig(**options)

    def _generate_batch(self, rows: list[list[int]], sampling: SamplingParams) -> list[Sample]:
        """Left-pad ``rows`` into one batch and decode it with a single ``generate`` call.

        ``generate`` derives the position ids from the attention mask at every step itself
        (see the module docstring), so the padded batch's own are not passed.
        """
        batch = left_pad(rows, self.pad_id)
        recorder = SampledLogprobs(sampling.temperature) if sampling.logprobs else None
        # generate comes from GenerationMixin, which every causal LM class mixes in but
        # PreTrainedModel does not declare.
        output = self.model.generate(  # type: ignore[operator]
            input_ids=batch.input_ids.to(self.device),
            attention_mask=batch.attention_mask.to(self.device),
            generation_config=self.generation_config(sampling),
            logits_processor=LogitsProcessorList([recorder]) if recorder else None,
        )
        new_tokens = output[:, batch.input_ids.shape[1] :]
        logprobs = recorder.result(new_tokens).cpu() if recorder else None
        samples: list[Sample] = []
        for r, row in enumerate(new_tokens.cpu().tolist()):
            ids, finish, text = self.codec.finish(row)
            row_logprobs = logprobs[r, : len(ids)].tolist() if logprobs is not None else None
            samples.append((ids, finish, text, row_logprobs))
        return samples
