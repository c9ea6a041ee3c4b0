"""Fixtures of the trainer tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers are shared with ds_worker.py, which runs outside pytest; make them importable.
sys.path.insert(0, str(Path(__file__).parent))

from rl_helpers import build_tiny_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 + tokenizer saved with save_pretrained, shared by the session."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_qwen2"))
