"""Engines on CUDA: HFEngine in bf16 and, where installed, VLLMEngine. Skipped without CUDA."""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from ttrl.engines import SamplingParams, VLLMOptions
from ttrl.engines.hf import HFEngine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
needs_vllm = pytest.mark.skipif(find_spec("vllm") is None, reason="needs vllm (ttrl[vllm])")

PROMPTS = ["What is 2+3?", "7*8=?", "Compute (12+30)/2, then add 1."]
GREEDY = SamplingParams(temperature=0, max_new_tokens=16)


def _ids(groups: list[list]) -> list[list[list[int]]]:
    return [[c.token_ids for c in group] for group in groups]


@pytest.fixture(scope="module")
def gpu_model_a(tmp_path_factory: pytest.TempPathFactory, save_model: Callable[..., Path]) -> Path:
    # Head size 64: every vLLM attention backend supports it.
    return save_model(tmp_path_factory.mktemp("gpu_a"), seed=1, hidden_size=256)


@pytest.fixture(scope="module")
def gpu_model_b(tmp_path_factory: pytest.TempPathFactory, save_model: Callable[..., Path]) -> Path:
    return save_model(tmp_path_factory.mktemp("gpu_b"), seed=2, hidden_size=256)


def test_hf_engine_on_cuda_swaps_weights_in_bf16(gpu_model_a: Path, gpu_model_b: Path) -> None:
    engine = HFEngine(gpu_model_a)
    assert engine.device.type == "cuda" and engine.dtype == torch.bfloat16
    sampled = engine.generate(PROMPTS, n=4, sampling=SamplingParams(max_new_tokens=16, seed=0))
    again = engine.generate(PROMPTS, n=4, sampling=SamplingParams(max_new_tokens=16, seed=0))
    assert _ids(sampled) == _ids(again)

    expected = _ids(HFEngine(gpu_model_b).generate(PROMPTS, n=1, sampling=GREEDY))
    state_b = AutoModelForCausalLM.from_pretrained(gpu_model_b).state_dict()  # fp32, on CPU
    engine.update_weights(state_b.items(), version=1)
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == expected


def test_hf_engine_sleep_frees_gpu_memory(gpu_model_a: Path) -> None:
    engine = HFEngine(gpu_model_a)
    before = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    allocated = torch.cuda.memory_allocated()
    engine.sleep()
    assert engine.asleep
    assert torch.cuda.memory_allocated() < allocated
    with pytest.raises(RuntimeError, match="asleep"):
        engine.generate(PROMPTS, n=1, sampling=GREEDY)
    engine.wake()
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == before


@needs_vllm
def test_vllm_engine_generates_swaps_and_sleeps(gpu_model_a: Path, gpu_model_b: Path) -> None:
    from ttrl.engines.vllm import VLLMEngine

    # One vLLM engine per process (sleep mode's allocator is a singleton): one test.
    options = VLLMOptions(gpu_memory_utilization=0.3, enforce_eager=True, max_model_len=256)
    engine = VLLMEngine(gpu_model_a, options=options)

    seeded = SamplingParams(max_new_tokens=16, seed=0, logprobs=True)
    first = engine.generate(PROMPTS, n=4, sampling=seeded)
    assert [len(group) for group in first] == [4, 4, 4]
    assert _ids(first) == _ids(engine.generate(PROMPTS, n=4, sampling=seeded))
    for c in first[0]:
        assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
        assert c.prompt_token_ids == engine.encode([PROMPTS[0]])[0]

    greedy_a = _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY))
    state_a = AutoModelForCausalLM.from_pretrained(gpu_model_a).state_dict()
    state_b = AutoModelForCausalLM.from_pretrained(gpu_model_b).state_dict()
    engine.update_weights(((k, v.cuda()) for k, v in state_b.items()), version=1)
    greedy_b = engine.generate(PROMPTS, n=1, sampling=GREEDY)
    assert _ids(greedy_b) != greedy_a
    assert all(c.model_version == 1 for group in greedy_b for c in group)

    engine.update_weights(state_a.items(), version=2)
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == greedy_a

    engine.load_checkpoint(gpu_model_b, version=3)
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == _ids(greedy_b)

    free_before = torch.cuda.mem_get_info()[0]
    engine.sleep()
    assert torch.cuda.mem_get_info()[0] > free_before
    engine.wake()
    assert _ids(engine.generate(PROMPTS, n=1, sampling=GREEDY)) == _ids(greedy_b)
