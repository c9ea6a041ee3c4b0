"""The embedded rollout engine: transformers ``generate`` with a KV cache, CPU or CUDA.

Prompts are tokenized once, packed into length-grouped batches under a token budget
(:func:`ttrl.engines.batching.plan_batches`), left-padded, and sampled with a
``GenerationConfig`` built from :class:`SamplingParams` alone (the model's own
generation defaults, e.g. a repetition penalty, would bias RL rollouts). New weights are
copied into the live module's tensors: no re-instantiation, no disk.

Left padding is safe because ``GenerationMixin.prepare_inputs_for_generation``
(transformers 5, used as is by Llama and Qwen2) derives ``position_ids`` from the
attention mask (``cumsum - 1``), so a padded row sees the positions it would see alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch
from loguru import logger
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from ttrl.engines.base import Completion, FinishReason, SamplingParams
from ttrl.engines.batching import plan_batches
from ttrl.engines.config import EngineConfig
from ttrl.engines.model_files import load_causal_lm
from ttrl.engines.paths import resolve_model_path
from ttrl.engines.tokens import PromptCodec, check_prompts
from ttrl.engines.weights import check_finite, check_named_tensors, read_checkpoint

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# One generated row: kept token ids, why it ended, its text, per-token logprobs (if asked).
_Sample = tuple[list[int], FinishReason, str, list[float] | None]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; an explicit CUDA device must exist.

    Raises:
        ValueError: CUDA was asked for on a machine without it.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"engine.device={device!r} but CUDA is not available; use cpu or auto")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"`` is bfloat16 on CUDA (the dtype RL recipes train in) and float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"engine.dtype={dtype!r}; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


class _SampledLogprobs(LogitsProcessor):
    """Records log p(sampled token) under the sampling distribution, one step at a time.

    transformers runs custom processors before its temperature/top-k/top-p warpers, so
    ``scores`` here are the model's logits; they are divided by ``temperature`` here, as
    the trainer does, so the logprobs are those of the behaviour policy (what vLLM's
    ``processed_logprobs`` reports; equal to it when top-k and top-p are off). The token
    sampled at step t is only known at step t+1 (as the last input id), so each step's
    log-softmax waits one call; the last one is resolved by :meth:`result`. Memory: one
    (batch, vocab) tensor, not one per step.
    """

    def __init__(self, temperature: float) -> None:
        self._temperature = temperature if temperature > 0 else 1.0
        self._pending: torch.Tensor | None = None
        self._steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self._steps.append(self._pending.gather(1, input_ids[:, -1:]).squeeze(1))
        self._pending = torch.log_softmax(scores.float() / self._temperature, dim=-1)
        return scores

    def result(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(batch, steps) logprobs of ``new_tokens``, the ids generate appended."""
        if self._pending is None:
            raise RuntimeError("no decoding step was recorded")
        last = self._pending.gather(1, new_tokens[:, -1:]).squeeze(1)
        return torch.stack([*self._steps, last], dim=1)


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run under a fixed seed without disturbing the caller's global RNG state."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _servable(tensor: torch.Tensor, target: torch.Tensor) -> bool:
    """Whether ``tensor`` can stand in for the weight ``target`` as it is (a shared update)."""
    return (
        tensor.device == target.device
        and tensor.dtype == target.dtype
        and tensor.is_contiguous()
        and not tensor.is_meta
    )


class HFEngine:
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
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_batch_tokens = max_batch_tokens
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = load_causal_lm(
            path, trust_remote_code=trust_remote_code, dtype=self.dtype, **extra
        )
        self.model.to(self.device).eval()
        self.codec = PromptCodec.load(
            path,
            self.model.generation_config,
            use_chat_template=use_chat_template,
            system_prompt=system_prompt,
            trust_remote_code=trust_remote_code,
        )
        # Sample exactly as SamplingParams says: transformers 5 fills every option a
        # GenerationConfig leaves unset from the model's own (e.g. a repetition penalty),
        # so the model keeps only the library's neutral defaults once its stop ids are read;
        # its own stay readable as ``generation_defaults`` (e.g. for ``ttrl eval``).
        self.generation_defaults: GenerationConfig = self.model.generation_config
        self.model.generation_config = GenerationConfig()
        pad = self.codec.tokenizer.pad_token_id
        self.pad_id = self.codec.stop_ids[0] if pad is None else pad
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._version = version  # a resumed checkpoint keeps its number
        self._asleep = False
        self._shared: set[str] = set()  # weights that are the trainer's tensors (share=True)
        # generate and update_weights may come from different threads (daemon jobs).
        self._lock = threading.RLock()
        logger.info(
            f"HFEngine: {path} on {self.device} ({self.dtype}), chat template {self.codec.chat}"
        )

    @classmethod
    def from_config(cls, cfg: EngineConfig, version: int = 0) -> HFEngine:
        """Build from the ``engine:`` section; ``version`` numbers the weights of ``cfg.model``."""
        return cls(
            cfg.model,
            device=cfg.device,
            dtype=cfg.dtype,
            use_chat_template=cfg.use_chat_template,
            system_prompt=cfg.system_prompt,
            max_batch_tokens=cfg.max_batch_tokens,
            attn_implementation=cfg.attn_implementation,
            trust_remote_code=cfg.trust_remote_code,
            version=version,
        )

    @property
    def version(self) -> int:
        """The weight version now served (as given at construction, then by each swap)."""
        return self._version

    @property
    def needs_weights(self) -> bool:
        """Always False: sleep moves the weights to CPU, it never drops them."""
        return False

    @property
    def asleep(self) -> bool:
        """Whether the weights are offloaded to CPU (CUDA only)."""
        return self._asleep

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt token ids exactly as :meth:`generate` feeds them to the model."""
        return self.codec.encode(prompts)

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
            samples: list[list[_Sample]] = [[] for _ in prompt_ids]
            with _seeded(sampling.seed, self.device):
                for budget, indices in self._new_token_budgets(prompt_ids, sampling).items():
                    step = replace(sampling, max_new_tokens=budget)
                    lengths = [len(prompt_ids[i]) for i in indices]
                    for batch in plan_batches(lengths, rows, budget, self.max_batch_tokens):
                        owners = [indices[k] for k, count in batch for _ in range(count)]
                        outputs = self._generate_batch([prompt_ids[i] for i in owners], step)
                        for owner, sample in zip(owners, outputs, strict=True):
                            samples[owner].append(sample)
        return [
            self._completions(ids, group, n, version)
            for ids, group in zip(prompt_ids, samples, strict=True)
        ]

    def update_weights(
        self,
        named_tensors: Iterable[tuple[str, torch.Tensor]],
        version: int,
        *,
        share: bool = False,
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
        with self._lock, torch.no_grad():
            live = self._weights()
            expected = {name: (t.shape, t.dtype) for name, t in live.items()}
            tensors = check_named_tensors(expected, named_tensors)
            shared = {n for n, t in tensors.items() if share and _servable(t, live[n])}
            check_finite({n: t for n, t in tensors.items() if n not in shared})
            for name, tensor in tensors.items():
                if name in shared:
                    live[name].data = tensor.detach()
                    self._shared.add(name)
                    continue
                if name in self._shared:  # never write into the trainer's tensor
                    live[name].data = torch.empty_like(live[name])
                    self._shared.discard(name)
                live[name].copy_(tensor)
            if not share:
                self._own_weights(live)  # the shared weights this update did not name
            if self.device.type == "cuda" and not self._asleep:
                torch.cuda.synchronize(self.device)
            self._version = version
        how = f"{len(shared)} shared, {len(tensors) - len(shared)} copied" if share else "copied"
        logger.info(
            f"HFEngine: now serving version {version} "
            f"({len(tensors)} tensors {how} in {time.perf_counter() - start:.3f}s)"
        )

    def _weights(self) -> dict[str, torch.Tensor]:
        """The model's ``state_dict`` names mapped to its Parameter / buffer objects (whose
        ``.data`` a shared update rebinds; ``state_dict()`` holds detached aliases)."""
        objects: dict[str, torch.Tensor] = dict(self.model.named_parameters(remove_duplicate=False))
        objects.update(self.model.named_buffers(remove_duplicate=False))
        return {name: objects.get(name, t) for name, t in self.model.state_dict().items()}

    def _own_weights(self, live: dict[str, torch.Tensor]) -> None:
        """Give each weight still shared its own storage (a copy of its current value)."""
        for name in self._shared:
            live[name].data = live[name].data.clone()
        self._shared.clear()

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
            self._shared.clear()  # the move gives every weight its own copy
            self.model.to("cpu")
            torch.cuda.empty_cache()
            self._asleep = True

    def wake(self) -> None:
        """Move the weights back to the GPU after :meth:`sleep`."""
        with self._lock:
            if not self._asleep:
                return
            self.model.to(self.device)
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

    def _generate_batch(self, rows: list[list[int]], sampling: SamplingParams) -> list[_Sample]:
        """Left-pad ``rows`` into one batch and decode it with a single ``generate`` call."""
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, ids in enumerate(rows):
            input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[r, width - len(ids) :] = 1
        recorder = _SampledLogprobs(sampling.temperature) if sampling.logprobs else None
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            generation_config=self.generation_config(sampling),
            logits_processor=LogitsProcessorList([recorder]) if recorder else None,
        )
        new_tokens = output[:, width:]
        logprobs = recorder.result(new_tokens).cpu() if recorder else None
        samples: list[_Sample] = []
        for r, row in enumerate(new_tokens.cpu().tolist()):
            ids, finish, text = self.codec.finish(row)
            row_logprobs = logprobs[r, : len(ids)].tolist() if logprobs is not None else None
            samples.append((ids, finish, text, row_logprobs))
        return samples

    def _completions(
        self, prompt_ids: list[int], samples: list[_Sample], n: int, version: int
    ) -> list[Completion]:
        if len(samples) == 1 and n > 1:
            samples = samples * n
        return [
            Completion(
                text=text,
                prompt_token_ids=list(prompt_ids),
                token_ids=list(ids),
                finish_reason=finish,
                model_version=version,
                logprobs=None if logprobs is None else list(logprobs),
            )
            for ids, finish, text, logprobs in samples
        ]
