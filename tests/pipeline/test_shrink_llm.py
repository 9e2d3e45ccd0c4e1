"""shrink on a causal LM: int4 GGUF candidates on llama.cpp, a perplexity budget, decode speed as the latency."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from kill_harness import tiny_causal_lm  # noqa: E402

from sizewise.compress.registry import SearchSpace  # noqa: E402
from sizewise.core.budget import Budget  # noqa: E402
from sizewise.pipeline import ShrinkConfig  # noqa: E402
from sizewise.pipeline.config import resolve_methods  # noqa: E402
from sizewise.pipeline.results import latency_of  # noqa: E402
from sizewise.pipeline.trial import slot_methods  # noqa: E402
from sizewise.report.shrink_report import shrink  # noqa: E402


def test_on_llamacpp_only_the_methods_whose_result_runs_there_are_searched():
    space = SearchSpace("causal-lm", "tokens", "llamacpp", "latency")
    slots, left_out = slot_methods(resolve_methods(("prune", "quantize")), space, has_train=True)
    # pruning a decoder LLM (blocks, MLP neurons, query heads, Wanda's sparsity) comes before the int4 GGUF step
    assert slots == {"structure": ["attn-heads", "depth", "ffn", "wanda"], "deploy": ["int4-awq", "int4-rtn"]}
    assert any(reason.startswith("int8-dynamic (its result runs on torch or onnxruntime, not llamacpp")
               for reason in left_out)
    # and an image model on onnxruntime is not offered the int4 GGUF methods
    images = SearchSpace("image-classification", "tensor", "onnxruntime", "latency")
    slots, _ = slot_methods(resolve_methods(("quantize",)), images, has_train=True)
    assert not {"int4-awq", "int4-rtn"} & set(slots["deploy"])


@pytest.mark.timeout(600)
def test_a_causal_lm_search_chooses_an_int4_gguf_on_perplexity_and_decode_speed(tmp_path):
    model, text = tiny_causal_lm(tmp_path)
    config = ShrinkConfig(max_drop=Budget.parse("10%"), runtime="llamacpp", methods=("int4-rtn",), trials=2,
                          threads=1, latency_seconds=0.05, compare_seconds=0.5)
    shrink(str(model), str(text), tmp_path / "out", config, command="test")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["metric"] == "perplexity" and r["selection_split"] == "validation" and r["reported_split"] == "test"
    trials = r["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert {s["method"] for t in trials for s in t["plan"]["steps"]} == {"int4-rtn"}
    for t in trials:  # latency is the decoded token's, from the trial's own card on llama.cpp
        card = json.loads((Path(t["artifact"]) / "card.json").read_text())["after"]
        assert t["objectives"]["latency"] == latency_of(card)[0] == card["llm"]["generation"][0]["decode"]["p50_ms"]
    chosen = r["chosen"]
    assert chosen["test"]["meets_budget"] and chosen["test"]["card"]["metrics"]["split"] == "test"
    assert list((Path(chosen["artifact"]) / "model").glob("*.gguf"))
    base, card = r["baseline"]["runtime_fp32"], chosen["test"]["card"]
    assert card["size"]["disk_bytes"] * 3 < base["size"]["disk_bytes"]  # 4-bit blocks against float32
    for against in ("runtime_fp32", "torch_fp32"):
        assert r["speedups"][against]["timed"].startswith("one greedy decode step")
    assert "fewer bytes" in r["headline"]


def test_the_int4_search_offers_only_group_sizes_that_divide_the_rows():
    import optuna

    from sizewise.compress.registry import get_method

    def sizes(widths):
        space = SearchSpace("causal-lm", "tokens", "llamacpp", "latency", widths)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        seen = set()
        for _ in range(40):
            trial = study.ask()
            seen.add(get_method("int4-rtn").search(trial, space).group_size)
            study.tell(trial, 1.0)
        return seen

    assert sizes((576, 1536)) == {32, 64}  # SmolLM2: 576 = 4.5 x 128
    assert sizes((512, 2048)) == {32, 64, 128}


def _sampled(method: str, space, n: int = 60) -> list:
    import optuna

    from sizewise.compress.registry import get_method

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(get_method(method).search(trial, space))
        study.tell(trial, 1.0)
    return configs


def test_the_int4_search_chooses_how_many_layers_stay_at_8_bits():
    from sizewise.compress.quantize.llm import KEEP_8BIT

    space = SearchSpace("causal-lm", "tokens", "llamacpp", "latency", (576, 1536), 30)
    kept = {c.keep_8bit for c in _sampled("int4-awq", space)}
    assert kept == set(KEEP_8BIT) and 0 in kept


def test_the_pruning_searches_stay_in_their_ranges():
    space = SearchSpace("causal-lm", "tokens", "llamacpp", "latency", (576, 1536), 30)
    assert {c.blocks for c in _sampled("depth", space)} <= set(range(1, 8)) and \
        max(c.blocks for c in _sampled("depth", space)) == 7  # a quarter of 30 blocks
    assert {c.blocks for c in _sampled("depth", SearchSpace("causal-lm", "tokens", "torch", "latency", (), 2))} == {1}
    assert all(0.1 <= c.sparsity <= 0.5 for c in _sampled("ffn", space))
    assert {c.sparsity for c in _sampled("attn-heads", space)} == {0.25, 0.5}
    wanda = _sampled("wanda", space)
    assert {c.pattern for c in wanda} == {"unstructured", "2:4"}
    assert all(c.sparsity == 0.5 for c in wanda if c.pattern == "2:4")
    assert all(0.2 <= c.sparsity <= 0.6 for c in wanda)


@pytest.mark.timeout(600)
def test_on_ort_genai_the_search_tries_w8a8_folders_and_times_them_there(tmp_path):
    pytest.importorskip("onnxruntime_genai")
    model, text = tiny_causal_lm(tmp_path)
    space = SearchSpace("causal-lm", "tokens", "ortgenai", "latency")
    slots, _ = slot_methods(resolve_methods(("quantize",)), space, has_train=True)
    assert "int8-smoothquant" in slots["deploy"]
    config = ShrinkConfig(max_drop=Budget.parse("10%"), runtime="ortgenai", methods=("int8-smoothquant",), trials=2,
                          threads=1, latency_seconds=0.05, compare_seconds=0.5)
    shrink(str(model), str(text), tmp_path / "out", config, command="test")
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    trials = r["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for t in trials:  # each trial's alpha and block are the search's; its latency is timed on ORT GenAI
        step = t["plan"]["steps"][0]
        assert step["method"] == "int8-smoothquant" and step["config"]["alpha"] in (0.0, 0.5, 0.8)
        card = json.loads((Path(t["artifact"]) / "card.json").read_text())["after"]
        assert card["latency"]["runtime"] == "ortgenai"
        assert t["objectives"]["latency"] == latency_of(card)[0]
    assert r["chosen"]["test"]["card"]["metrics"]["split"] == "test"
