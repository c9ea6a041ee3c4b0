"""`released()`: the engine is left able to serve on every way out of a training block.

The level-2 sleep that drops the weights exists only on CUDA vLLM, so its state machine is
played by a recording engine here; HFEngine shows the no-op side for real.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
import torch

from ttrl.engines import Completion, Engine, SamplingParams, released
from ttrl.engines.hf import HFEngine

GREEDY = SamplingParams(temperature=0, max_new_tokens=8)


class DroppingEngine:
    """Sleep drops the weights (vLLM level 2): wake brings back memory, not weights."""

    def __init__(self) -> None:
        self.state = "awake"
        self.loaded: list[int] = []
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    @property
    def needs_weights(self) -> bool:
        return self.state == "weights-only"

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        assert self.state == "awake", f"cannot serve: {self.state}"
        return [[] for _ in prompts]

    def update_weights(
        self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int
    ) -> None:
        assert dict(named_tensors)
        self.state = "awake"
        self.loaded.append(version)
        self._version = version

    def load_checkpoint(self, model_dir: str | Path, version: int) -> None:
        raise NotImplementedError

    def sleep(self) -> None:
        self.state = "asleep"

    def wake(self) -> None:
        if self.state == "asleep":
            self.state = "weights-only"


def _weights(version: int) -> tuple[list[tuple[str, torch.Tensor]], int]:
    return [("w", torch.ones(1))], version


def test_the_recording_engine_follows_the_contract() -> None:
    assert isinstance(DroppingEngine(), Engine)


def test_a_skipped_update_gets_the_current_weights_back() -> None:
    engine = DroppingEngine()
    with released(engine, lambda: _weights(0)):
        assert engine.state == "asleep"
    assert engine.state == "awake" and engine.loaded == [0]
    engine.generate(["2+2"], 1, GREEDY)


def test_a_failed_update_leaves_the_engine_serving() -> None:
    engine = DroppingEngine()
    with (
        pytest.raises(RuntimeError, match="optimizer blew up"),
        released(engine, lambda: _weights(3)),
    ):
        raise RuntimeError("optimizer blew up")
    assert engine.state == "awake" and engine.loaded == [3]


def test_weights_loaded_in_the_block_are_not_loaded_again() -> None:
    engine = DroppingEngine()
    with released(engine, lambda: _weights(0)):
        engine.wake()
        engine.update_weights(*_weights(1))
    assert engine.loaded == [1]


def test_hf_engine_never_needs_weights(model_a: Path) -> None:
    engine = HFEngine(model_a, device="cpu")
    before = engine.generate(["2+2"], 1, GREEDY)[0][0].token_ids
    with released(engine, lambda: pytest.fail("HFEngine keeps its weights")):
        pass
    assert not engine.needs_weights
    assert engine.generate(["2+2"], 1, GREEDY)[0][0].token_ids == before


class HalfSleepingEngine(DroppingEngine):
    """Sleep drops the weights, then fails before it is done."""

    def sleep(self) -> None:
        super().sleep()
        raise RuntimeError("sleep failed halfway")


def test_a_sleep_that_fails_halfway_is_woken_from() -> None:
    engine = HalfSleepingEngine()
    with (
        pytest.raises(RuntimeError, match="sleep failed halfway"),
        released(engine, lambda: _weights(2)),
    ):
        pytest.fail("the block must not run when sleep failed")
    assert engine.state == "awake" and engine.loaded == [2]
    engine.generate(["2+2"], 1, GREEDY)


def test_a_failed_update_leaves_the_hf_engine_serving(
    model_a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = HFEngine(model_a, device="cpu")
    before = engine.generate(["2+2"], 1, GREEDY)[0][0].token_ids
    # Sleep as on CUDA, where it offloads the weights: asleep, generate refuses.
    monkeypatch.setattr(engine, "sleep", lambda: setattr(engine, "_asleep", True))
    with (
        pytest.raises(RuntimeError, match="optimizer blew up"),
        released(engine, lambda: pytest.fail("HFEngine keeps its weights")),
    ):
        assert engine.asleep
        with pytest.raises(RuntimeError, match="asleep"):
            engine.generate(["2+2"], 1, GREEDY)
        raise RuntimeError("optimizer blew up")
    assert not engine.asleep
    assert engine.generate(["2+2"], 1, GREEDY)[0][0].token_ids == before
