"""The rollout engine contract shared by every backend (transformers, vLLM).

Kept free of heavy imports (torch only for type checking) so that the config tree can
import :class:`SamplingParams` without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ttrl.lm.tokens import FinishReason

if TYPE_CHECKING:
    from pathlib import Path

    import torch

# A weight update: (state_dict name, tensor) pairs.
NamedTensors = Iterable[tuple[str, "torch.Tensor"]]


class WeightUpdateError(ValueError):
    """New weights were refused; the engine still serves the previous version."""


class EngineUnavailable(ImportError):
    """The configured engine's library is not installed here (vLLM on a CPU host)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions.

    ``temperature == 0`` means greedy decoding (then all ``n`` completions of a prompt are
    the same). ``top_k == 0`` and ``top_p == 1`` switch those filters off. With ``seed``
    set, the same prompts, ``n`` and engine settings give the same completions. With
    ``logprobs``, each completion carries the log-probability of each of its tokens under
    the distribution it was sampled from: logits divided by ``temperature`` (top-k and
    top-p renormalise it further in vLLM only; both are off by default). That is the
    behaviour policy of the trainer's importance-sampling correction.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(
                f"sampling.temperature={self.temperature} is negative; use 0 for greedy "
                "decoding or a positive value to sample"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p={self.top_p} must be in (0, 1]; 1 disables it")
        if self.top_k < 0:
            raise ValueError(f"sampling.top_k={self.top_k} must be >= 0; 0 disables it")
        if self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens={self.max_new_tokens} must be >= 1")

    @property
    def greedy(self) -> bool:
        """Whether decoding is deterministic argmax."""
        return self.temperature == 0


@dataclass
class Completion:
    """One sampled completion of one prompt.

    ``token_ids`` include the stop token when ``finish_reason == "stop"`` (the policy must
    learn to stop), while ``text`` is decoded without it. ``model_version`` is the weight
    version that produced the completion.
    """

    text: str
    prompt_token_ids: list[int]
    token_ids: list[int]
    finish_reason: FinishReason
    model_version: int
    logprobs: list[float] | None = field(default=None)


@runtime_checkable
class Engine(Protocol):
    """Samples completions and takes new weights in place."""

    @property
    def version(self) -> int:
        """The weight version now served (0 for the weights loaded at start)."""
        ...

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """Return ``n`` completions per prompt, in prompt order."""
        ...

    def update_weights(
        self, named_tensors: NamedTensors, version: int, *, share: bool = False
    ) -> None:
        """Copy new weights into the live model; on any error keep serving the old ones.

        ``share=True``: the caller is the co-located trainer (``Trainer.shares_weights``);
        an engine that can serve its tensors in place, without a copy, may (HFEngine does
        where device and dtype match; vLLM always loads into its own layout).

        Raises:
            WeightUpdateError: an unknown name, a wrong shape, or a non-finite value.
        """
        ...

    def load_checkpoint(self, model_dir: str | Path, version: int) -> None:
        """Serve the weights of a safetensors checkpoint directory (hosts that do not train)."""
        ...

    def sleep(self) -> None:
        """Release accelerator memory (no-op where meaningless)."""
        ...

    def wake(self) -> None:
        """Regain accelerator memory after :meth:`sleep`."""
        ...

    @property
    def needs_weights(self) -> bool:
        """Whether the engine cannot serve until weights are loaded (vLLM after a level-2
        sleep dropped them); see :func:`released`."""
        ...


# What to serve when training handed back no new weights: (tensors, their version).
WeightSource = Callable[[], tuple[NamedTensors, int]]


@contextmanager
def released(engine: Engine, weights: WeightSource) -> Iterator[None]:
    """Hand the accelerator to training for the block; on every way out (an update that
    was skipped, one that raised, a sleep that failed halfway) the engine is woken and can
    serve again. This is the one place the daemon puts an engine to sleep.

    An engine whose sleep dropped its weights (vLLM ``sleep_level: 2``) is given
    ``weights()`` on the way out if nothing loaded new ones in the block, so it never
    waits for weights that do not come.
    """
    try:
        engine.sleep()
        yield
    finally:
        engine.wake()
        if engine.needs_weights:
            tensors, version = weights()
            engine.update_weights(tensors, version)
