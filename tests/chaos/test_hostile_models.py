"""Hostile model directories: corrupt files, pickle weights, remote code.

The tiny model is copied to a temp dir and damaged. Every entry point that loads weights
(the HF engine, its checkpoint swap, the trainer) must refuse it with an error naming the
directory (or file), and must never unpickle a file or run code shipped with a model
unless ``engine.trust_remote_code`` is on.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from ttrl.engines import EngineConfig, SamplingParams
from ttrl.engines.hf import HFEngine
from ttrl.lm.files import ModelFilesError
from ttrl.lm.paths import resolve_model_path
from ttrl.rl.config import RLConfig
from ttrl.rl.trainer import Trainer


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the tiny model, free to damage."""
    return Path(shutil.copytree(resolve_model_path("builtin:tiny"), tmp_path / "model"))


def engine(path: Path) -> HFEngine:
    return HFEngine.from_config(EngineConfig(model=str(path), device="cpu"))


def trainer(path: Path) -> Trainer:
    return Trainer(RLConfig(device="cpu"), path)


LOADERS: dict[str, Callable[[Path], object]] = {"engine": engine, "trainer": trainer}
GREEDY = SamplingParams(temperature=0, max_new_tokens=8)


def truncate(path: Path) -> None:
    file = path / "model.safetensors"
    os.truncate(file, file.stat().st_size // 2)


def empty_weights(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"")


def garble_header(path: Path) -> None:
    file = path / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[8:200] = b"\xff" * 192  # the JSON header starts at byte 8
    file.write_bytes(bytes(data))


def garbage_config(path: Path) -> None:
    (path / "config.json").write_text('{"model_type": "qwen2", ')


def config_not_an_object(path: Path) -> None:
    (path / "config.json").write_text("[1, 2, 3]")


def unknown_model_type(path: Path) -> None:
    (path / "config.json").write_text('{"model_type": "no-such-architecture"}')


def wrong_shapes(path: Path) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))


def garbage_tokenizer(path: Path) -> None:
    (path / "tokenizer.json").write_bytes(b"\x00\x01 not json")


CORRUPTIONS = {
    truncate: ("model.safetensors is corrupt or truncated", "model.safetensors"),
    empty_weights: ("model.safetensors is corrupt or truncated", "model.safetensors"),
    garble_header: ("model.safetensors is corrupt or truncated", "model.safetensors"),
    garbage_config: ("config.json is not valid JSON", "config.json"),
    config_not_an_object: ("config.json names no model_type", "config.json"),
    unknown_model_type: ("cannot load the", ""),  # the model, or first the tokenizer
    wrong_shapes: ("size mismatch", ""),
    garbage_tokenizer: ("tokenizer.json is not valid JSON", "tokenizer.json"),
}


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_a_corrupt_model_dir_is_refused_with_its_name(
    model_dir: Path, corrupt: Callable[[Path], None], loader: str
) -> None:
    corrupt(model_dir)
    reason, file = CORRUPTIONS[corrupt]
    with pytest.raises(ModelFilesError) as raised:
        LOADERS[loader](model_dir)
    message = str(raised.value)
    assert reason in message and str(model_dir / file).rstrip("/") in message


@pytest.mark.parametrize("loader", LOADERS)
def test_a_missing_config_is_refused_with_the_dir_name(model_dir: Path, loader: str) -> None:
    (model_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no config\.json") as raised:
        LOADERS[loader](model_dir)
    assert str(model_dir) in str(raised.value)


class _Poison:
    """Unpickling this creates the marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def poison(path: Path, marker: Path) -> None:
    """A pickle 'checkpoint' that touches ``marker`` when loaded (torch.load included)."""
    (path / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Poison(marker)}))


@pytest.mark.parametrize("loader", LOADERS)
def test_pickle_only_weights_are_refused_and_never_unpickled(
    model_dir: Path, tmp_path: Path, loader: str
) -> None:
    marker = tmp_path / "unpickled"
    (model_dir / "model.safetensors").unlink()
    poison(model_dir, marker)
    with pytest.raises(FileNotFoundError) as raised:
        LOADERS[loader](model_dir)
    message = str(raised.value)
    assert str(model_dir) in message and "only pickle weights (pytorch_model.bin)" in message
    assert "safe_serialization=True" in message
    assert not marker.exists()


def test_a_pickle_next_to_safetensors_is_ignored(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    poison(model_dir, marker)
    served = engine(model_dir)
    trainer(model_dir)
    assert served.generate(["1+1="], 1, GREEDY)[0][0].token_ids
    assert not marker.exists()


def test_a_corrupt_checkpoint_swap_keeps_serving_the_old_weights(
    model_dir: Path, tmp_path: Path
) -> None:
    served = engine(model_dir)
    bad = Path(shutil.copytree(model_dir, tmp_path / "v1"))
    truncate(bad)
    before = served.generate(["1+1="], 1, GREEDY)[0][0].token_ids
    with pytest.raises(ModelFilesError, match=re.escape(f"{bad / 'model.safetensors'} is corrupt")):
        served.load_checkpoint(bad, version=1)
    assert served.version == 0
    assert served.generate(["1+1="], 1, GREEDY)[0][0].token_ids == before


REMOTE_CONFIG = """
import os
from pathlib import Path

from transformers import Qwen2Config

Path(os.environ["TTRL_TEST_MARKER"]).touch()  # the proof that this file ran


class EvilConfig(Qwen2Config):
    model_type = "evil"
"""
REMOTE_MODEL = """
from transformers import Qwen2ForCausalLM

from .configuration_evil import EvilConfig


class EvilForCausalLM(Qwen2ForCausalLM):
    config_class = EvilConfig
"""


def remote_code_model(path: Path) -> None:
    """The tiny model, declared as a custom architecture whose code ships in the dir."""
    config = json.loads((path / "config.json").read_text())
    config["model_type"] = "evil"
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "configuration_evil.py").write_text(REMOTE_CONFIG)
    (path / "modeling_evil.py").write_text(REMOTE_MODEL)


def test_remote_code_runs_only_when_the_config_says_so(model_dir: Path, tmp_path: Path) -> None:
    remote_code_model(model_dir)
    marker = tmp_path / "remote-code-ran"
    os.environ["TTRL_TEST_MARKER"] = str(marker)
    try:
        with pytest.raises(ModelFilesError, match="trust_remote_code") as raised:
            engine(model_dir)
    finally:
        del os.environ["TTRL_TEST_MARKER"]
    assert str(model_dir) in str(raised.value)
    assert not marker.exists()

    # engine.trust_remote_code: true reaches transformers: the shipped code runs. In a child
    # process, so that transformers copies the code into a private modules cache.
    script = textwrap.dedent(
        f"""
        from ttrl.engines import EngineConfig
        from ttrl.engines.hf import HFEngine
        cfg = EngineConfig(model={str(model_dir)!r}, device="cpu", trust_remote_code=True)
        engine = HFEngine.from_config(cfg)
        print(type(engine.model).__name__)
        """
    )
    env = {
        **os.environ,
        "TTRL_TEST_MARKER": str(marker),
        "HF_MODULES_CACHE": str(tmp_path / "hf-modules"),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("EvilForCausalLM") and marker.exists()
