"""ONNX Runtime GenAI as a runtime (--runtime ortgenai) and the int4-ortgenai method, on a tiny random Llama (hidden
64, head size 16, 2 layers): a float model is built as fp32 by the library's builder and must score torch's
perplexity; the int4 folder's weights read back into torch must score what ORT scores; a quantize plan saves the
folder, reloads it and measures it there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gguf")  # the shared tiny-Llama fixtures live in test_llm_int4, which needs it

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compress"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sizewise  # noqa: E402
from sizewise.compress.quantize import OrtGenAIInt4  # noqa: E402
from sizewise.core.errors import ConfigError, MissingExtraError, ModelReferenceError  # noqa: E402
from sizewise.core.optional import available  # noqa: E402
from sizewise.measure import MeasureConfig  # noqa: E402
from sizewise.measure.api import RUNTIMES  # noqa: E402
from sizewise.measure.llm import LLMConfig  # noqa: E402
from sizewise.tasks.perplexity import PerplexityConfig, perplexity  # noqa: E402
from test_llm_int4 import LINES, text, tiny, tokenizer  # noqa: E402,F401  (fixtures)

needs_genai = pytest.mark.skipif(not available("onnxruntime_genai") or not available("onnx"),
                                 reason="onnxruntime-genai is not installed (pip install 'sizewise[ortgenai]')")

LLM = LLMConfig(prompt_tokens=8, new_tokens=4, runs=2, warmup=1, bandwidth_buffer_bytes=8 * 2**20,
                energy_seconds=0.02, perplexity=PerplexityConfig(context=32, stride=16))
FAST = MeasureConfig(runtime="ortgenai", threads=1, latency_seconds=0.05, measure_memory=False,
                     throughput_sweep=(1,), llm=LLM)
PPL = PerplexityConfig(context=32, stride=16)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """fp32, int4 (block 32, accuracy level 4: the default) and int4 with fp32 compute (accuracy level 1)."""
    from sizewise.models.ortgenai import build
    from test_llm_int4 import _llama

    root = tmp_path_factory.mktemp("ortgenai")
    module = _llama()
    return {"fp32": build(module, tokenizer, root / "fp32", "fp32"),
            "int4": build(module, tokenizer, root / "int4", "int4", block_size=32),
            "int4-acc1": build(module, tokenizer, root / "int4-acc1", "int4", block_size=32, accuracy_level=1)}


def _ppl(module, tokenizer) -> float:
    return perplexity(module, tokenizer, LINES[8:16], PPL).token_perplexity


@needs_genai
def test_fp32_on_ort_genai_scores_torchs_perplexity_and_generates_its_tokens(tiny, text):
    card = sizewise.measure(tiny, FAST, data=text)
    torch_card = sizewise.measure(tiny, MeasureConfig(threads=1, latency_seconds=0.05, measure_memory=False,
                                                      throughput_sweep=(1,), llm=LLM), data=text)
    # same windows, same token ids, same weights: only float summation order differs
    assert card.metrics["perplexity"] == pytest.approx(torch_card.metrics["perplexity"], rel=2e-5)
    assert card.llm.perplexity.tokens_scored == torch_card.llm.perplexity.tokens_scored
    assert card.latency.runtime == "ortgenai" and card.llm.device.startswith("cpu (ORT GenAI")
    gen = card.llm.generation[0]
    assert gen.batch_size == 1 and gen.decode.tokens_per_s > 0 and gen.prefill.tokens_per_s > 0
    assert gen.ttft_p50_ms > 0 and gen.kv_cache.bytes_per_element == 4
    # what is deployed is the built folder: its bytes, float32 weights only
    assert "model.onnx.data" in card.size.artifact and "genai_config.json" in card.size.artifact
    assert set(card.size.memory_by_dtype) == {"float32"} and card.size.disk_bytes > card.size.memory_bytes


@needs_genai
def test_greedy_decode_on_the_generator_equals_torch_generate(folders, tiny):
    from sizewise.models.ortgenai import OrtGenAIModule

    prompt = tiny.inputs.tokenizer(LINES[0], add_special_tokens=False)["input_ids"][:10]
    with torch.no_grad():
        expected = tiny.module.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                        min_new_tokens=6)[0, len(prompt):].tolist()
    run = OrtGenAIModule(folders["fp32"], threads=1, config=tiny.module.config).generate_timed(prompt, 6)
    assert run.tokens == expected and len(run.step_ns) == 5 and run.ttft_ns > 0


@needs_genai
def test_the_fp32_folder_reads_back_to_the_exact_weights(folders, tiny):
    from sizewise.models.ortgenai import folder_state

    state = folder_state(folders["fp32"], tiny.module.config)
    own = tiny.module.state_dict()
    assert set(state) == {k for k in own if "rotary" not in k} | {"lm_head.weight"}
    for name, value in state.items():
        assert torch.equal(value, own[name]), name


@needs_genai
def test_int4_weights_read_back_score_what_ort_scores(folders, tiny, tokenizer):
    import copy

    from sizewise.models.ortgenai import OrtGenAIModule, load_weights

    float_ppl = _ppl(tiny.module, tokenizer)
    twin = load_weights(copy.deepcopy(tiny.module), folders["int4-acc1"])
    assert not torch.equal(twin.model.layers[0].mlp.up_proj.weight, tiny.module.model.layers[0].mlp.up_proj.weight)
    # fp32 compute on the int4 blocks: ORT and the dequantized torch twin agree to float rounding
    ort_acc1 = _ppl(OrtGenAIModule(folders["int4-acc1"], 1, tiny.module.config), tokenizer)
    assert ort_acc1 == pytest.approx(_ppl(twin, tokenizer), rel=1e-4)
    # int8 activations (accuracy level 4, the default): close to it, and int4 stays near the float model
    ort_acc4 = _ppl(OrtGenAIModule(folders["int4"], 1, tiny.module.config), tokenizer)
    assert ort_acc4 == pytest.approx(ort_acc1, rel=0.02)
    assert ort_acc4 == pytest.approx(float_ppl, rel=0.05) and ort_acc4 != float_ppl


@needs_genai
def test_int4_folder_is_smaller_and_its_bytes_are_reported(folders):
    from sizewise.measure.ortgenai import folder_size

    fp32, int4 = folder_size(folders["fp32"]), folder_size(folders["int4"])
    assert int4.disk_bytes < 0.5 * fp32.disk_bytes
    assert "uint8" in int4.memory_by_dtype  # the packed 4-bit blocks
    assert int4.disk_bytes == sum(f.stat().st_size for f in Path(folders["int4"]).iterdir())


@needs_genai
def test_an_output_matrix_shared_with_the_embedding_is_read_whole(folders):
    from sizewise.measure.ortgenai import bytes_by_dtype, step_read_bytes

    # int4: GatherBlockQuantized looks rows up in the blocks the last MatMulNBits reads whole: nothing is left out
    assert step_read_bytes(folders["int4"]) == sum(bytes_by_dtype(folders["int4"]).values())
    # fp32 of a tied model: the Gather reads a Transpose of the output matrix, one initializer read whole
    assert step_read_bytes(folders["fp32"]) == sum(bytes_by_dtype(folders["fp32"]).values())


@needs_genai
def test_quantize_plan_saves_the_folder_reloads_and_measures_it_on_ort_genai(tiny, text, tmp_path):
    plan = sizewise.Plan((sizewise.Step("int4-ortgenai", OrtGenAIInt4()),))
    result = sizewise.run(tiny, plan, data=text, out=tmp_path / "q", measure_config=FAST)
    before, after = result.before, result.after
    assert "uint8" in after.size.memory_by_dtype and set(before.size.memory_by_dtype) == {"float32"}
    assert after.size.disk_bytes < 0.5 * before.size.disk_bytes
    assert after.latency.runtime == "ortgenai" and after.llm.perplexity is not None
    assert after.metrics["perplexity"] == pytest.approx(before.metrics["perplexity"], rel=0.05)
    model_dir = tmp_path / "q" / "model"
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "config.json"} <= {p.name for p in
                                                                                     model_dir.iterdir()}
    record = json.loads((tmp_path / "q" / "card.json").read_text())
    assert record["steps"][0]["details"]["block_size"] == 32
    reloaded = sizewise.load(str(tmp_path / "q"))
    assert reloaded.metadata["encoding"] == "ortgenai"
    from sizewise.measure.ortgenai import own_folder

    assert own_folder(reloaded) == str(model_dir.resolve())
    # the torch twin holds the folder's weights: a later step that changes them cannot ship the stale folder
    with torch.no_grad():
        reloaded.module.model.norm.weight.add_(1.0)
    assert own_folder(reloaded) is None
    with pytest.raises(ModelReferenceError, match="changed after its ORT GenAI folder was written"):
        from sizewise.models.artifact import save_model

        save_model(reloaded, tmp_path / "again")


@needs_genai
def test_cli_quantize_measure_and_report(tmp_path):
    from typer.testing import CliRunner

    from reliability.kill_harness import tiny_causal_lm
    from sizewise.cli.app import app

    model_dir, text_dir = tiny_causal_lm(tmp_path / "tiny")
    out = tmp_path / "q"
    fast = ["--threads", "1", "--no-memory"]
    result = CliRunner().invoke(app, ["quantize", str(model_dir), "--data", str(text_dir), "--method",
                                      "int4-ortgenai", "--runtime", "ortgenai", "--group-size", "64", "--out",
                                      str(out), *fast])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["steps"][0]["details"]["block_size"] == 64
    measured = CliRunner().invoke(app, ["measure", str(out), "--runtime", "ortgenai", "--json",
                                        str(tmp_path / "card.json"), "--prompt-len", "16", "--new-tokens", "4", *fast])
    assert measured.exit_code == 0, measured.output
    card = json.loads((tmp_path / "card.json").read_text())
    assert "model.onnx.data" in card["size"]["artifact"] and "uint8" in card["size"]["memory_by_dtype"]
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert any(p.suffix in (".html", ".md") for p in out.iterdir())


# ------------------------------------------------------------------------------------------------ bad inputs


@needs_genai
def test_a_model_that_is_not_a_causal_lm_gets_one_line(tmp_path):
    from typer.testing import CliRunner

    from helpers.hf_dirs import bert_classifier_dir
    from sizewise.cli.app import app

    result = CliRunner().invoke(app, ["measure", str(bert_classifier_dir(tmp_path / "bert")), "--runtime",
                                      "ortgenai", "--no-memory", "--threads", "1"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "ONNX Runtime GenAI runs causal language models" in result.output and len(lines) <= 2, result.output


@needs_genai
def test_a_head_size_the_cpu_attention_cannot_run_is_refused_before_building(tmp_path):
    from helpers.hf_dirs import llama_dir

    loaded = sizewise.load(str(llama_dir(tmp_path / "llama")))  # head size 8
    with pytest.raises(ConfigError, match="multiple of 16; '.*' has 8"):
        sizewise.measure(loaded, FAST)


def test_without_the_extra_the_error_names_it(monkeypatch, tiny, tmp_path):
    from sizewise.models import ortgenai

    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError) as info:
        ortgenai.build(tiny.module, tiny.inputs.tokenizer, tmp_path / "x", "fp32")
    assert "onnxruntime_genai" in str(info.value) and "sizewise[ortgenai]" in info.value.hint


def test_without_the_extra_the_cli_says_which_extra_in_one_line(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from reliability.kill_harness import tiny_causal_lm
    from sizewise.cli.app import app

    model_dir, _ = tiny_causal_lm(tmp_path / "tiny")
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    result = CliRunner().invoke(app, ["measure", str(model_dir), "--runtime", "ortgenai", "--no-memory", "--threads",
                                      "1"])
    assert result.exit_code == 1 and "pip install 'sizewise[ortgenai]'" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fields, message", [
    ({"group_size": 48}, "block size must be one of"),
    ({"accuracy_level": 5}, "accuracy level must be 0-4"),
    ({"runtime": "onnxruntime"}, "pass --runtime ortgenai"),
])
def test_bad_options_are_refused(fields, message):
    with pytest.raises(ConfigError) as info:
        OrtGenAIInt4(**fields)
    assert message in str(info.value) + str(getattr(info.value, "hint", ""))


def test_the_method_is_registered_for_the_ortgenai_runtime():
    from sizewise.compress.registry import get_method

    method = get_method("int4-ortgenai")
    assert method.family == "quantize" and method.kernel == "int4" and method.runtimes == ("ortgenai",)
    assert method.encoding == "ortgenai" and not method.needs_data
    assert "ortgenai" in RUNTIMES
