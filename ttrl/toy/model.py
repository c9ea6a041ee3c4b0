"""The tiny model's architecture: a small Qwen2 (the family of Qwen2.5-Math, TTRL's base).

Sharing the architecture with the real models means the engine, trainer and weight
hot-swap run the very code paths on a laptop that they run on a GPU host.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerFast, Qwen2Config


@dataclass(frozen=True)
class ToyArch:
    """Size of the tiny model; the defaults are the shipped model (1.06M parameters)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    # Room for prompt + the daemon's default max_new_tokens (256); RoPE has no weights
    # for positions, so this number costs nothing.
    max_positions: int = 512


def qwen2_config(arch: ToyArch, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
    """A ``Qwen2Config`` for ``arch`` whose vocabulary and special ids match ``tokenizer``."""
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_heads,
        max_position_embeddings=arch.max_positions,
        # Tied embeddings: with ~100 tokens the output matrix would be pure overhead.
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
