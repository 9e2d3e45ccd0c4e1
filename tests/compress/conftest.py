"""Fixtures shared by the decoder-LLM pruning tests."""

import sys
from pathlib import Path

import pytest

import sizewise

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from kill_harness import tiny_causal_lm  # noqa: E402


@pytest.fixture
def tiny_lm(tmp_path):
    """A 2-block Llama small enough to train in seconds, loaded, with its text dataset (train/valid/test files)."""
    model_dir, text_dir = tiny_causal_lm(tmp_path / "lm")
    return sizewise.load(str(model_dir)), sizewise.load_dataset(str(text_dir))
