"""Fixtures for the engine tests: tiny random Qwen2 models saved like hub models.

Nothing is downloaded: a character tokenizer and a randomly initialised two-layer Qwen2
are saved to a temporary directory and loaded back through the public loaders.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
ALPHABET = string.ascii_letters + string.digits + " +-*/=?.,:()\n"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """One token per character (BPE without merges), specials first: pad=0, eos=1."""
    vocab = {token: i for i, token in enumerate([*SPECIALS, *ALPHABET])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.add_special_tokens(SPECIALS)
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        chat_template=CHAT_TEMPLATE if chat_template else None,
        clean_up_tokenization_spaces=False,
    )


def save_random_model(
    path: Path, seed: int, *, chat_template: bool = True, hidden_size: int = 64, layers: int = 2
) -> Path:
    """Save a randomly initialised tiny Qwen2 and its tokenizer to ``path``.

    A wide init (0.2) makes the next-token distribution peaked, so greedy decoding is
    not at the mercy of float rounding between batch shapes.
    """
    tokenizer = build_tokenizer(chat_template)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    # The CI machine has two cores shared with other jobs.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random Qwen2 with a chat template (seed 1)."""
    return save_random_model(tmp_path_factory.mktemp("model_a"), seed=1)


@pytest.fixture(scope="session")
def model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture as ``model_a``, other random weights (seed 2)."""
    return save_random_model(tmp_path_factory.mktemp("model_b"), seed=2)


@pytest.fixture(scope="session")
def model_wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another architecture (hidden size 96): its weights must not fit ``model_a``."""
    return save_random_model(tmp_path_factory.mktemp("model_wide"), seed=3, hidden_size=96)


@pytest.fixture(scope="session")
def save_model() -> Callable[..., Path]:
    """:func:`save_random_model`, for tests that need another size or seed."""
    return save_random_model


@contextmanager
def files_opened() -> Iterator[list[str]]:
    """The paths opened inside the block (an audit hook; hooks cannot be removed, so a
    flag turns it off on the way out)."""
    opened: list[str] = []
    watching = True

    def audit(event: str, args: tuple) -> None:
        if watching and event == "open":
            opened.append(str(args[0]))

    sys.addaudithook(audit)
    try:
        yield opened
    finally:
        watching = False


@pytest.fixture
def watch_files() -> Callable[[], AbstractContextManager[list[str]]]:
    """:func:`files_opened`, for tests that prove a swap reads no file."""
    return files_opened
