"""HFEngine on CPU with tiny random Qwen2 models: sampling contract and weight hot-swap."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from ttrl.engines import SamplingParams, WeightUpdateError
from ttrl.engines.hf import HFEngine

PROMPTS = ["What is 2+3?", "7*8=?", "Compute (12+30)/2, then add 1.", "x"]
GREEDY = SamplingParams(temperature=0, max_new_tokens=12)


@pytest.fixture
def engine(model_a: Path) -> HFEngine:
    return HFEngine(model_a, device="cpu")


def _ids(groups: list[list]) -> list[list[list[int]]]:
    return [[c.token_ids for c in group] for group in groups]


def test_same_seed_gives_same_completions(engine: HFEngine) -> None:
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10, seed=123)
    first = _ids(engine.generate(PROMPTS, n=4, sampling=sampling))
    second = _ids(engine.generate(PROMPTS, n=4, sampling=sampling))
    other_seed = _ids(
        engine.generate(PROMPTS, n=4, sampling=SamplingParams(max_new_tokens=10, seed=7))
    )
    assert first == second
    assert first != other_seed
    # The n samples of a prompt really are distinct draws.
    assert all(len({tuple(ids) for ids in group}) > 1 for group in first)


def test_seed_leaves_global_rng_alone(engine: HFEngine) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    engine.generate(["1+1"], n=2, sampling=SamplingParams(max_new_tokens=4, seed=5))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("max_batch_tokens", [65536, 40])
def test_n_completions_per_prompt_in_prompt_order(model_a: Path, max_batch_tokens: int) -> None:
    # 40 tokens fit only one or two rows: prompts and their samples split across batches.
    engine = HFEngine(model_a, device="cpu", max_batch_tokens=max_batch_tokens)
    groups = engine.generate(PROMPTS, n=3, sampling=SamplingParams(max_new_tokens=8, seed=3))
    assert len(groups) == len(PROMPTS)
    for prompt, group in zip(PROMPTS, groups, strict=True):
        assert len(group) == 3
        (expected_prompt_ids,) = engine.encode([prompt])
        assert all(c.prompt_token_ids == expected_prompt_ids for c in group)
        assert all(c.model_version == 0 for c in group)


def test_batching_does_not_change_greedy_outputs(model_a: Path) -> None:
    big = HFEngine(model_a, device="cpu").generate(PROMPTS, n=2, sampling=GREEDY)
    one_row = HFEngine(model_a, device="cpu", max_batch_tokens=1).generate(
        PROMPTS, n=2, sampling=GREEDY
    )
    assert _ids(big) == _ids(one_row)
    assert all(group[0].token_ids == group[1].token_ids for group in big)


def test_left_padded_batch_matches_unpadded_single_prompt(engine: HFEngine) -> None:
    lengths = [len(ids) for ids in engine.encode(PROMPTS)]
    assert len(set(lengths)) > 1, "prompts must differ in length to exercise padding"
    batched = engine.generate(PROMPTS, n=1, sampling=GREEDY)
    for prompt, group in zip(PROMPTS, batched, strict=True):
        alone = engine.generate([prompt], n=1, sampling=GREEDY)
        assert group[0].token_ids == alone[0][0].token_ids


def test_finish_reason_length_when_max_new_tokens_is_hit(engine: HFEngine) -> None:
    groups = engine.generate(PROMPTS, n=4, sampling=SamplingParams(max_new_tokens=6, seed=11))
    completions = [c for group in groups for c in group]
    for c in completions:
        if c.finish_reason == "length":
            assert len(c.token_ids) == 6
            assert not set(c.token_ids) & set(engine.codec.stop_ids)
        else:
            assert c.token_ids[-1] in engine.codec.stop_ids
    assert any(c.finish_reason == "length" for c in completions)


def test_completions_stop_at_the_models_last_position(engine: HFEngine) -> None:
    # model_a has 256 positions: each prompt gets only the room it has left.
    prompts = ["1+1=" * 60, "2+2=" * 61 + "2"]
    lengths = [len(ids) for ids in engine.encode(prompts)]
    assert lengths[0] != lengths[1]
    groups = engine.generate(prompts, n=2, sampling=SamplingParams(max_new_tokens=100, seed=0))
    for length, group in zip(lengths, groups, strict=True):
        for c in group:
            if c.finish_reason == "length":
                assert len(c.token_ids) == 256 - length
    assert any(c.finish_reason == "length" for group in groups for c in group)


def test_finish_reason_stop_at_a_configured_eos(model_a: Path, tmp_path: Path) -> None:
    # Make the token greedy decoding emits first an extra EOS id of the model (the way
    # chat models list <|im_end|> in generation_config), then decoding must stop there.
    first = HFEngine(model_a, device="cpu").generate(["7*8=?"], n=1, sampling=GREEDY)[0][0]
    stop_token = first.token_ids[0]
    model_dir = shutil.copytree(model_a, tmp_path / "model")
    config_path = model_dir / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = [config["eos_token_id"], stop_token]
    config_path.write_text(json.dumps(config))

    completion = HFEngine(model_dir, device="cpu").generate(["7*8=?"], n=2, sampling=GREEDY)[0]
    assert [c.token_ids for c in completion] == [[stop_token], [stop_token]]
    assert [c.finish_reason for c in completion] == ["stop", "stop"]
    assert completion[0].text == ""


def test_top_k_one_equals_greedy(engine: HFEngine) -> None:
    top1 = engine.generate(
        PROMPTS, n=2, sampling=SamplingParams(top_k=1, max_new_tokens=12, seed=1)
    )
    greedy = engine.generate(PROMPTS, n=2, sampling=GREEDY)
    assert _ids(top1) == _ids(greedy)


def test_logprobs_match_a_teacher_forced_forward_pass(engine: HFEngine) -> None:
    sampling = SamplingParams(temperature=0.8, max_new_tokens=8, seed=2, logprobs=True)
    groups = engine.generate(PROMPTS, n=2, sampling=sampling)
    for group in groups:
        for c in group:
            assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
            ids = torch.tensor([c.prompt_token_ids + c.token_ids])
            with torch.no_grad():
                logits = engine.model(ids).logits[0].float()
            start = len(c.prompt_token_ids) - 1
            # The sampling distribution: logits over the temperature, as the trainer scores.
            steps = torch.log_softmax(logits[start : start + len(c.token_ids)] / 0.8, dim=-1)
            expected = steps.gather(1, torch.tensor(c.token_ids)[:, None]).squeeze(1)
            torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_chat_template_applied_only_when_asked(model_a: Path) -> None:
    chat = HFEngine(model_a, device="cpu", system_prompt="Be brief.")
    plain = HFEngine(model_a, device="cpu", use_chat_template=False)
    tokenizer = chat.codec.tokenizer
    (chat_ids,) = chat.encode(["2+2"])
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert chat_ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert plain.encode(["2+2"]) == [tokenizer("2+2")["input_ids"]]


def test_update_weights_serves_model_b_without_reading_files(
    engine: HFEngine, model_b: Path, watch_files: Callable
) -> None:
    expected = _ids(HFEngine(model_b, device="cpu").generate(PROMPTS, n=1, sampling=GREEDY))
    state_b = AutoModelForCausalLM.from_pretrained(model_b).state_dict()
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    assert before != expected

    with watch_files() as opened:
        engine.update_weights(state_b.items(), version=1)
    assert opened == []

    after = engine.generate(PROMPTS, n=1, sampling=GREEDY)
    assert _ids(after) == expected
    assert engine.version == 1
    assert all(c.model_version == 1 for group in after for c in group)


def test_load_checkpoint_serves_the_saved_weights(engine: HFEngine, model_b: Path) -> None:
    expected = _ids(HFEngine(model_b, device="cpu").generate(PROMPTS, n=1, sampling=GREEDY))
    engine.load_checkpoint(model_b, version=4)
    assert engine.version == 4
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == expected


def test_update_weights_is_in_place(engine: HFEngine, model_b: Path) -> None:
    params_before = {name: p.data_ptr() for name, p in engine.model.named_parameters()}
    module_before = engine.model
    state_b = AutoModelForCausalLM.from_pretrained(model_b).state_dict()
    engine.update_weights(state_b.items(), version=3)
    assert engine.model is module_before
    assert {name: p.data_ptr() for name, p in engine.model.named_parameters()} == params_before
    name = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(engine.model.state_dict()[name], state_b[name])


def test_shared_update_serves_the_callers_tensors_without_a_copy(
    engine: HFEngine, model_b: Path
) -> None:
    expected = _ids(HFEngine(model_b, device="cpu").generate(PROMPTS, n=1, sampling=GREEDY))
    trainer = AutoModelForCausalLM.from_pretrained(model_b)  # stands for the trainer's model
    given = {name: p.detach() for name, p in trainer.named_parameters()}
    engine.update_weights(given.items(), version=2, share=True)
    live = engine.model.state_dict()
    assert all(live[name].data_ptr() == t.data_ptr() for name, t in given.items())
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == expected
    assert engine.version == 2


def test_after_sharing_other_updates_never_write_into_the_shared_tensors(
    engine: HFEngine, model_a: Path, model_b: Path
) -> None:
    # The guard's base probe and a rollback load files into an engine that serves the
    # trainer's tensors: the trainer's weights must come out unchanged.
    trainer = AutoModelForCausalLM.from_pretrained(model_b)
    given = {name: p.detach() for name, p in trainer.named_parameters()}
    values = {name: t.clone() for name, t in given.items()}
    engine.update_weights(given.items(), version=1, share=True)
    name = "model.layers.1.self_attn.q_proj.weight"
    engine.update_weights([(name, torch.zeros_like(given[name]))], version=2)  # partial
    engine.load_checkpoint(model_a, version=0)
    assert all(torch.equal(given[n], v) for n, v in values.items())
    live = engine.model.state_dict()
    assert all(live[n].data_ptr() != t.data_ptr() for n, t in given.items())
    expected = _ids(HFEngine(model_a, device="cpu").generate(PROMPTS, n=1, sampling=GREEDY))
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == expected


def test_shared_update_copies_what_it_cannot_serve_and_still_checks_shapes(
    engine: HFEngine, model_b: Path
) -> None:
    state_b = AutoModelForCausalLM.from_pretrained(model_b).state_dict()
    half = {k: v.to(torch.bfloat16) for k, v in state_b.items()}  # not the engine's dtype
    engine.update_weights(half.items(), version=1, share=True)
    live = engine.model.state_dict()
    assert all(live[k].dtype == torch.float32 for k in half)
    assert all(live[k].data_ptr() != v.data_ptr() for k, v in half.items())
    with pytest.raises(WeightUpdateError, match=re.escape("shape (65,)")):
        engine.update_weights([("model.norm.weight", torch.ones(65))], version=2, share=True)
    assert engine.version == 1


def test_partial_update_changes_only_named_tensors(engine: HFEngine, model_b: Path) -> None:
    state_a = {k: v.clone() for k, v in engine.model.state_dict().items()}
    state_b = AutoModelForCausalLM.from_pretrained(model_b).state_dict()
    name = "model.layers.1.self_attn.q_proj.weight"
    engine.update_weights([(name, state_b[name])], version=1)
    live = engine.model.state_dict()
    assert torch.equal(live[name], state_b[name])
    assert all(torch.equal(live[k], v) for k, v in state_a.items() if k != name)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("model.layers.9.mlp.up_proj.weight", torch.zeros(128, 64)), "lacks"),
        (("module.model.norm.weight", torch.ones(64)), "strip wrapper prefixes"),
        (("model.norm.weight", torch.ones(65)), "shape (65,)"),
        (("model.norm.weight", torch.ones(64, dtype=torch.long)), "float dtype"),
        (("model.norm.weight", torch.full((64,), float("nan"))), "NaN"),
    ],
)
def test_bad_update_is_rejected_and_old_version_served(
    engine: HFEngine, model_b: Path, bad: tuple[str, torch.Tensor], message: str
) -> None:
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    state_before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    # Valid tensors first: a refused update must not have applied them either.
    state_b = AutoModelForCausalLM.from_pretrained(model_b).state_dict()
    update = [*((k, v) for k, v in state_b.items() if k != bad[0]), bad]
    with pytest.raises(WeightUpdateError, match=re.escape(message)):
        engine.update_weights(update, version=5)
    assert engine.version == 0
    assert all(torch.equal(engine.model.state_dict()[k], v) for k, v in state_before.items())
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == before


def test_empty_update_is_rejected(engine: HFEngine) -> None:
    with pytest.raises(WeightUpdateError, match="no tensors"):
        engine.update_weights([], version=1)


def test_bad_requests_name_the_input(engine: HFEngine) -> None:
    with pytest.raises(TypeError, match="one string"):
        engine.generate("2+2", n=1, sampling=GREEDY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n=0"):
        engine.generate(["2+2"], n=0, sampling=GREEDY)
    with pytest.raises(ValueError, match="no room"):
        engine.generate(["9" * 300], n=1, sampling=GREEDY)
    assert engine.generate([], n=3, sampling=GREEDY) == []


def test_sleep_and_wake_are_no_ops_on_cpu(engine: HFEngine) -> None:
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    engine.sleep()
    assert not engine.asleep
    engine.wake()
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == before
