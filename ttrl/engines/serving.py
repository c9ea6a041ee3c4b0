"""What both engines share around their backend: ttrl's own tokenizer, the weight version
served, the options both read from ``engine:``, and sampled rows made into completions."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypedDict

from ttrl.engines.base import Completion
from ttrl.engines.config import EngineConfig
from ttrl.engines.tokens import PromptCodec
from ttrl.lm.tokens import FinishReason

# One sampled row: kept token ids, why it ended, its text, per-token logprobs (if asked).
Sample = tuple[list[int], FinishReason, str, list[float] | None]


class CommonOptions(TypedDict):
    """The constructor options every engine takes from the ``engine:`` section."""

    dtype: str
    use_chat_template: bool
    system_prompt: str | None
    trust_remote_code: bool


def common_options(cfg: EngineConfig) -> CommonOptions:
    """The options of ``cfg`` that every engine's constructor takes."""
    return CommonOptions(
        dtype=cfg.dtype,
        use_chat_template=cfg.use_chat_template,
        system_prompt=cfg.system_prompt,
        trust_remote_code=cfg.trust_remote_code,
    )


class CodecEngine:
    """The base of both engines: prompts tokenized by ttrl (:class:`PromptCodec`), so the
    same prompt gives the same ids whichever engine serves it, and the version served."""

    def __init__(self, codec: PromptCodec, version: int) -> None:
        self.codec = codec
        self._version = version  # a resumed checkpoint keeps its number
        # generate and update_weights may come from different threads (daemon jobs).
        self._lock = threading.RLock()

    @property
    def version(self) -> int:
        """The weight version now served (as given at construction, then by each swap)."""
        return self._version

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt token ids exactly as ``generate`` feeds them to the model (the same in
        every engine)."""
        return self.codec.encode(prompts)


def completions(
    prompt_ids: list[int], samples: Sequence[Sample], n: int, version: int
) -> list[Completion]:
    """The ``n`` completions of one prompt from its sampled rows: one row stands for all
    ``n`` when decoding was greedy (all samples are the same)."""
    if len(samples) == 1 and n > 1:
        samples = list(samples) * n
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
