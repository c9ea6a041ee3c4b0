"""The tiny model's character tokenizer saves and loads like a hub tokenizer."""

from __future__ import annotations

from transformers import AutoTokenizer

from ttrl.toy.task import generate_problems
from ttrl.toy.tokenizer import EOS, PAD, UNK, build_tokenizer


def test_one_token_per_character_and_exact_round_trip() -> None:
    tokenizer = build_tokenizer()
    problem = next(generate_problems(0, 1, (4,)))
    text = problem.prompt + problem.completion()
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)  # no BOS/EOS added, one id a character
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([*ids, tokenizer.eos_token_id], skip_special_tokens=True) == text


def test_specials_and_unknown_characters() -> None:
    tokenizer = build_tokenizer()
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == (PAD, EOS, UNK)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    assert tokenizer("é")["input_ids"] == [tokenizer.unk_token_id]


def test_saved_tokenizer_loads_through_auto_tokenizer(tmp_path) -> None:
    build_tokenizer().save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "What is 12 * 3 + 4?\n12 * 3 = 36"
    assert loaded(text)["input_ids"] == build_tokenizer()(text)["input_ids"]
    assert loaded.eos_token_id == 1
