"""The training forward scores left-padded rows exactly like unpadded ones."""

import dataclasses

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2ForCausalLM

from ttrl.rl.forward import completion_logprobs
from ttrl.rl.losses import entropy_from_logits
from ttrl.rl.packing import TrainSequence, collate

SHORT = TrainSequence(prompt=[5, 6], completion=[7, 8, 9], advantage=0.0)
LONG = TrainSequence(
    prompt=[5, 6, 10, 11, 12, 13, 14], completion=[15, 16, 17, 18, 19], advantage=0.0
)


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Qwen2ForCausalLM:
    return Qwen2ForCausalLM.from_pretrained(tiny_model_dir).double().eval()


@pytest.fixture(scope="module")
def gpt2() -> GPT2LMHeadModel:
    """Absolute position embeddings: unlike RoPE, a position offset changes every output."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=48, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(config).double().eval()


@pytest.mark.parametrize("arch", ["model", "gpt2"])
def test_left_padding_does_not_change_logprobs(arch: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(arch)
    alone, _ = completion_logprobs(model, collate([SHORT], pad_id=0))
    batch = collate([SHORT, LONG], pad_id=0)
    padded, _ = completion_logprobs(model, batch)
    torch.testing.assert_close(padded[0, -3:], alone[0], rtol=0, atol=1e-10)


def test_position_ids_from_the_mask_are_what_keeps_padding_harmless(gpt2) -> None:
    alone, _ = completion_logprobs(gpt2, collate([SHORT], pad_id=0))
    batch = collate([SHORT, LONG], pad_id=0)
    # The trap: numbering the pad positions too (what a model does when no position_ids are
    # passed) scores the left-padded row at positions it was never sampled at.
    naive = dataclasses.replace(
        batch, position_ids=torch.arange(batch.input_ids.shape[1]).expand(2, -1)
    )
    shifted, _ = completion_logprobs(gpt2, naive)
    assert (shifted[0, -3:] - alone[0]).abs().max() > 1e-3


def test_logprobs_and_entropy_match_a_full_forward(model) -> None:
    mb = collate([SHORT, LONG], pad_id=0)
    logp, entropy = completion_logprobs(model, mb, temperature=0.7, with_entropy=True)
    full = model(
        input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids
    ).logits
    scaled = full[:, -mb.response_len - 1 : -1] / 0.7
    expected = torch.log_softmax(scaled, -1).gather(-1, mb.targets[..., None])[..., 0]
    torch.testing.assert_close(logp, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(entropy, entropy_from_logits(scaled), rtol=0, atol=1e-10)
    assert not entropy.requires_grad and logp.requires_grad
