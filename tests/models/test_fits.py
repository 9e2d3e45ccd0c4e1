"""A model too large for the memory available is refused before loading, with what it needs and what there is."""

import sys
from collections import namedtuple
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))

from hf_dirs import llama_dir  # noqa: E402

import sizewise  # noqa: E402
from sizewise.core.errors import ModelReferenceError  # noqa: E402
from sizewise.models import fits  # noqa: E402

Memory = namedtuple("Memory", "available total")


def test_a_model_larger_than_the_available_memory_is_refused_before_loading(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    directory = llama_dir(tmp_path / "m")
    stored = sum(f.stat().st_size for f in directory.glob("*.safetensors"))
    monkeypatch.setattr(fits.psutil, "virtual_memory", lambda: Memory(stored // 2, 2**30))
    with pytest.raises(ModelReferenceError, match=r"needs about .* of memory to load .*; this machine has .* "
                                                  r"available") as info:
        sizewise.load(str(directory))
    assert "sizewise estimate" in info.value.hint and "\n" not in str(info.value)
    monkeypatch.setattr(fits.psutil, "virtual_memory", lambda: Memory(stored * 4, 2**30))
    assert sizewise.load(str(directory)).task == "causal-lm"  # enough memory: it loads


def test_the_need_is_compared_with_what_is_available_now(monkeypatch):
    monkeypatch.setattr(fits.psutil, "virtual_memory", lambda: Memory(10 * 2**30, 64 * 2**30))
    fits.check_fits(9 * 2**30, "m.gguf", "weights dequantized to float32")  # fits: nothing raised
    with pytest.raises(ModelReferenceError, match="m.gguf needs about 11 GiB .*has 10 GiB available"):
        fits.check_fits(11 * 2**30, "m.gguf", "weights dequantized to float32")
