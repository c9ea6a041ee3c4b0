"""Prompt text to token ids, and generated ids back to a finished completion; shared by all
engines.

Both engines tokenize here so that the same prompt yields the same ``prompt_token_ids``
whichever engine served it (the trainer recomputes log-probabilities from those ids), and
cut completions by the stop rule the trainer applies too (:mod:`ttrl.lm.tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from loguru import logger

from ttrl.lm.load import load_tokenizer
from ttrl.lm.tokens import FinishReason, cut_at_stop, pad_token_id, stop_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def check_prompts(prompts: Sequence[str], n: int) -> None:
    """Reject what ``Engine.generate`` cannot serve, naming the bad input.

    Raises:
        TypeError: ``prompts`` is a single string or holds a non-string.
        ValueError: ``n < 1``.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got one string; wrap it: [prompt]")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompts[{i}] is {type(prompt).__name__}, expected str")
    if n < 1:
        raise ValueError(f"n={n}: the number of completions per prompt must be >= 1")


def uses_chat_template(tokenizer: PreTrainedTokenizerBase, requested: bool) -> bool:
    """Whether prompts get wrapped: the config asks for it and the tokenizer has a template."""
    if requested and not getattr(tokenizer, "chat_template", None):
        logger.info("tokenizer has no chat template; prompts are sent as plain text")
    return requested and bool(getattr(tokenizer, "chat_template", None))


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    chat: bool,
    system_prompt: str | None = None,
) -> list[list[int]]:
    """Token ids of each prompt, chat-templated (user turn + generation prompt) if ``chat``.

    Raises:
        ValueError: a prompt encodes to no tokens at all.
    """
    encoded: list[list[int]] = []
    for i, prompt in enumerate(prompts):
        if chat:
            messages = [{"role": "user", "content": prompt}]
            if system_prompt is not None:
                messages.insert(0, {"role": "system", "content": system_prompt})
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            # The template already holds any BOS/special tokens it wants.
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(prompt)["input_ids"]
        if not ids:
            raise ValueError(
                f"prompts[{i}]={prompt!r} encodes to no tokens; send a non-empty prompt"
            )
        encoded.append(list(ids))
    return encoded


@dataclass(frozen=True)
class PromptCodec:
    """One engine's way from prompt text to ids and from generated ids back to text."""

    tokenizer: PreTrainedTokenizerBase
    chat: bool
    system_prompt: str | None
    stop_ids: list[int]

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *configs: object,
        use_chat_template: bool,
        system_prompt: str | None,
        trust_remote_code: bool = False,
    ) -> PromptCodec:
        """The tokenizer saved in ``model_dir`` with the engine's prompt settings; ``configs``
        (the model's generation config and config) name the stop ids with the tokenizer
        (:func:`~ttrl.lm.tokens.stop_token_ids`)."""
        tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
        return cls(
            tokenizer=tokenizer,
            chat=uses_chat_template(tokenizer, use_chat_template),
            system_prompt=system_prompt,
            stop_ids=stop_token_ids(tokenizer, *configs),
        )

    @property
    def pad_id(self) -> int:
        """The id that pads a batch (:func:`~ttrl.lm.tokens.pad_token_id`)."""
        return pad_token_id(self.tokenizer, self.stop_ids)

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt token ids as the model sees them (see :func:`encode_prompts`)."""
        return encode_prompts(
            self.tokenizer, prompts, chat=self.chat, system_prompt=self.system_prompt
        )

    def finish(self, generated: Sequence[int]) -> tuple[list[int], FinishReason, str]:
        """Kept ids, finish reason and text (without the stop token) of one generated row."""
        ids, reason = cut_at_stop(generated, self.stop_ids)
        text = self.tokenizer.decode(
            ids[:-1] if reason == "stop" else ids, skip_special_tokens=True
        )
        return ids, reason, cast("str", text)  # one row of ids decodes to one string
