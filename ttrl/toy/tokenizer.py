"""A character-level tokenizer for the tiny model, built with the `tokenizers` library.

One token per character keeps every digit its own token (as Qwen2.5 and Llama 3 split
digits), which is what lets a model this small learn column arithmetic. Wrapped in a
``PreTrainedTokenizerFast`` it saves and loads like any hub tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

PAD = "<|pad|>"
EOS = "<|endoftext|>"
UNK = "<|unk|>"
SPECIALS = (PAD, EOS, UNK)

# Printable ASCII (letters, digits, punctuation, space) and newline: any plain-text math
# prompt tokenizes, and the ids never depend on the training data.
ALPHABET = "".join(sorted(set(string.printable) - set("\t\r\x0b\x0c")))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny model's tokenizer: specials first (pad=0, eos=1, unk=2), then :data:`ALPHABET`."""
    vocab = {token: i for i, token in enumerate([*SPECIALS, *ALPHABET])}
    # BPE without merges is exactly a character tokenizer; without a pre-tokenizer the
    # whole text is one word, so spaces and newlines are ordinary characters.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.add_special_tokens(list(SPECIALS))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
