"""The engine and the trainer end a completion at the same token: one stop rule
(:mod:`ttrl.lm.tokens`) read from the same tokenizer and configs, on the shipped tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttrl.engines import Completion, SamplingParams
from ttrl.engines.hf import HFEngine
from ttrl.lm.paths import resolve_model_path
from ttrl.rl.batch import Rollout, RolloutGroup
from ttrl.rl.config import RLConfig
from ttrl.rl.plan import train_sequences
from ttrl.rl.trainer import Trainer

PROMPT = "What is 19 + 97?"


@pytest.fixture(scope="module")
def tiny() -> Path:
    return resolve_model_path("builtin:tiny")


@pytest.fixture(scope="module")
def engine(tiny: Path) -> HFEngine:
    return HFEngine(tiny, device="cpu")


@pytest.fixture(scope="module")
def trainer(tiny: Path) -> Trainer:
    return Trainer(RLConfig(device="cpu"), tiny)


def _trained_completion(trainer: Trainer, prompt: list[int], generated: list[int]) -> list[int]:
    """The completion tokens the trainer trains on for one rollout of ``generated``."""
    group = RolloutGroup("p", [Rollout(prompt, generated, 1.0, 0)])
    [seq], _ = train_sequences([group], trainer.config, trainer.stop_ids)
    return seq.completion


def _greedy(engine: HFEngine, max_new_tokens: int) -> Completion:
    sampling = SamplingParams(temperature=0, max_new_tokens=max_new_tokens)
    return engine.generate([PROMPT], 1, sampling)[0][0]


def test_both_read_the_same_stop_and_pad_ids(engine: HFEngine, trainer: Trainer) -> None:
    assert trainer.stop_ids == engine.codec.stop_ids
    assert trainer.pad_id == engine.pad_id


@pytest.mark.parametrize(("budget", "reason"), [(64, "stop"), (2, "length")])
def test_a_sampled_completion_ends_where_the_trainer_cuts_it(
    engine: HFEngine, trainer: Trainer, budget: int, reason: str
) -> None:
    completion = _greedy(engine, budget)
    assert completion.finish_reason == reason
    assert (completion.token_ids[-1] in engine.codec.stop_ids) == (reason == "stop")
    # A finished row of a batch goes on with padding after its stop token.
    generated = completion.token_ids + ([engine.pad_id] * 3 if reason == "stop" else [])
    assert engine.codec.finish(generated)[:2] == (completion.token_ids, reason)
    trained = _trained_completion(trainer, completion.prompt_token_ids, generated)
    assert trained == completion.token_ids


def test_tokens_after_a_stop_token_belong_to_neither(engine: HFEngine, trainer: Trainer) -> None:
    [prompt] = engine.encode([PROMPT])
    stop = engine.codec.stop_ids[0]
    body = _greedy(engine, 2).token_ids
    generated = [*body, stop, *body]
    ids, reason, _ = engine.codec.finish(generated)
    assert (ids, reason) == ([*body, stop], "stop")
    assert _trained_completion(trainer, prompt, generated) == ids
