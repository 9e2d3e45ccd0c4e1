"""Cards measured on llama.cpp (--runtime llamacpp): a float model runs as an F32 GGUF export, a GGUF-quantized model
as its own file; a one-step quantize plan measures before and after there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compress"))

import sizewise  # noqa: E402
from sizewise.measure import MeasureConfig  # noqa: E402
from sizewise.measure.llm import LLMConfig  # noqa: E402
from sizewise.tasks.perplexity import PerplexityConfig  # noqa: E402
from test_llm_int4 import SMALL, text, tiny, tokenizer  # noqa: E402,F401  (fixtures)

FAST = MeasureConfig(runtime="llamacpp", threads=1, latency_seconds=0.05, measure_memory=False,
                     llm=LLMConfig(prompt_tokens=8, new_tokens=4, runs=2, warmup=1, bandwidth_buffer_bytes=8 * 2**20,
                                   energy_seconds=0.02, perplexity=PerplexityConfig(context=32, stride=16)))


def test_a_float_model_is_measured_on_llama_cpp_as_an_f32_file(tiny, text):
    card = sizewise.measure(tiny, FAST, data=text)
    assert card.latency.runtime == "llamacpp"
    assert card.size.artifact == "model-f32.gguf" and set(card.size.memory_by_dtype) == {"F32"}
    gen = card.llm.generation[0]
    assert gen.batch_size == 1 and gen.decode.tokens_per_s > 0 and gen.kv_cache.bytes_per_element == 2
    assert card.llm.perplexity.split == "test" and card.metrics["perplexity"] > 1
    # llama.cpp's perplexity is torch's on the same weights, to float rounding
    torch_card = sizewise.measure(tiny, MeasureConfig(threads=1, latency_seconds=0.05, measure_memory=False,
                                                      llm=FAST.llm), data=text)
    assert card.metrics["perplexity"] == pytest.approx(torch_card.metrics["perplexity"], rel=1e-3)


def test_quantize_plan_measures_before_and_after_on_llama_cpp(tiny, text, tmp_path):
    plan = sizewise.Plan((sizewise.Step("int4-rtn", sizewise.LLMWeightInt4(algorithm="rtn", **SMALL)),))
    result = sizewise.run(tiny, plan, data=text, out=tmp_path / "q", measure_config=FAST, max_drop="50%")
    before, after = result.before, result.after
    assert before.size.artifact == "model-f32.gguf" and after.size.artifact == "model.gguf"
    assert after.size.disk_bytes < 0.5 * before.size.disk_bytes
    assert "Q4_1" in after.size.memory_by_dtype and after.llm.dtype.startswith("F32+Q4_1")
    assert after.latency.runtime == "llamacpp" and after.llm.perplexity is not None
    record = json.loads((tmp_path / "q" / "card.json").read_text())
    assert record["steps"][0]["details"]["decision"]["split"] == "validation"
    assert (tmp_path / "q" / "model" / "model.gguf").is_file()
    reloaded = sizewise.load(str(tmp_path / "q"))
    assert reloaded.metadata["encoding"] == "gguf"
