"""int8-smoothquant (W8A8 on ONNX Runtime GenAI) on a tiny random Llama: the smoothing is the same function and
flattens the activations it targets; the int8 folder's weights read back into torch; the step chooses alpha on the
validation split by the folder's own perplexity; a plan saves, reloads and measures the folder; bad input is one
line."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gguf")  # the shared tiny-Llama fixtures live in test_llm_int4, which needs it

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sizewise  # noqa: E402
from sizewise.compress.quantize import SmoothQuantW8A8  # noqa: E402
from sizewise.compress.quantize.smoothquant import input_absmax, smooth, smooth_groups  # noqa: E402
from sizewise.core.errors import ConfigError, DataError  # noqa: E402
from sizewise.core.optional import available  # noqa: E402
from sizewise.measure import MeasureConfig  # noqa: E402
from sizewise.measure.llm import LLMConfig  # noqa: E402
from sizewise.tasks.perplexity import PerplexityConfig  # noqa: E402
from test_llm_int4 import LINES, _llama, text, tiny, tokenizer  # noqa: E402,F401  (fixtures)

needs_genai = pytest.mark.skipif(not available("onnxruntime_genai") or not available("onnx"),
                                 reason="onnxruntime-genai is not installed (pip install 'sizewise[ortgenai]')")

SMALL = {"calibration_samples": 4, "calibration_tokens": 32, "eval_tokens": 256}
LLM = LLMConfig(prompt_tokens=8, new_tokens=4, runs=2, warmup=1, bandwidth_buffer_bytes=8 * 2**20,
                energy_seconds=0.02, perplexity=PerplexityConfig(context=32, stride=16))
FAST = MeasureConfig(runtime="ortgenai", threads=1, latency_seconds=0.05, measure_memory=False,
                     throughput_sweep=(1,), llm=LLM)


def _ids(tokenizer, n=4):
    return [torch.tensor(tokenizer(line, add_special_tokens=False)["input_ids"]).unsqueeze(0) for line in LINES[:n]]


def _with_outlier_channels(module):
    """Real LLMs have a few input channels far larger than the rest; give the tiny one such channels."""
    with torch.no_grad():
        for layer in module.model.layers:
            layer.input_layernorm.weight[[3, 17]] *= 40.0
            layer.mlp.up_proj.weight[[5, 60]] *= 30.0
    return module


def test_smoothing_is_the_same_function_and_flattens_the_activations(tokenizer):
    module = _with_outlier_channels(_llama())
    ids = _ids(tokenizer)
    groups = smooth_groups(module)
    assert len(groups) == 3 * len(module.model.layers)
    before = input_absmax(module, groups, ids)
    with torch.no_grad():
        logits = [module(input_ids=i).logits for i in ids]
    smooth(groups, before, alpha=0.5)
    with torch.no_grad():
        for i, ref in zip(ids, logits):
            assert torch.allclose(module(input_ids=i).logits, ref, rtol=1e-4, atol=1e-4)
    after = input_absmax(module, smooth_groups(module), ids)
    # the largest channel over the median one (what int8 rounding suffers from), in the groups given outliers:
    # the attention inputs and the down projection's, per layer
    spread = [(float(b.max() / b.median()), float(a.max() / a.median())) for b, a in zip(before, after)]
    spiky = [(b, a) for b, a in spread if b > 10]
    assert len(spiky) == 2 * len(module.model.layers), spread
    assert all(a < 0.5 * b for b, a in spiky), spiky


def test_alpha_zero_leaves_the_weights_alone(tokenizer):
    module = _llama()
    state = copy.deepcopy(module.state_dict())
    groups = smooth_groups(module)
    smooth(groups, input_absmax(module, groups, _ids(tokenizer, 1)), alpha=0.0)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())


@needs_genai
def test_int8_folder_reads_back_within_a_step_and_unties_the_output(tiny, tokenizer, tmp_path, capfd, caplog):
    from sizewise.models.ortgenai import build, load_weights

    folder = build(tiny.module, tokenizer, tmp_path / "int8", "int8", block_size=32)
    # the quantizer's harmless ERROR about the float embedding does not reach the user's screen
    assert "Gather only supports" not in capfd.readouterr().err + caplog.text
    twin = load_weights(copy.deepcopy(tiny.module), folder)
    for name, layer in (("up", "mlp.up_proj"), ("q", "self_attn.q_proj")):
        ours = tiny.module.get_submodule(f"model.layers.0.{layer}").weight
        back = twin.get_submodule(f"model.layers.0.{layer}").weight
        # symmetric int8 with the block's extreme at -128 (MLAS' grid): a step of max|w| / 128, rounding errors of
        # half a step on average a quarter, one step where the opposite extreme clips at +127
        step = ours.detach().reshape(ours.shape[0], -1, 32).abs().amax(-1, keepdim=True) / 128
        error = (back - ours).detach().reshape(step.shape[0], -1, 32).abs() / step
        assert not torch.equal(back, ours) and float(error.max()) <= 1.001 and float(error.mean()) < 0.3, name
    # the graph keeps the embedding in float32 and the output matrix at 8 bits: two tensors in the twin as well
    assert torch.equal(twin.model.embed_tokens.weight, tiny.module.model.embed_tokens.weight)
    assert twin.lm_head.weight.data_ptr() != twin.model.embed_tokens.weight.data_ptr()
    assert not twin.config.tie_word_embeddings


@needs_genai
def test_the_step_chooses_alpha_on_validation_by_the_folders_perplexity(tiny, text, tmp_path):
    from sizewise.compress.quantize.smoothquant import ALPHAS, quantize_smoothquant
    from sizewise.compress.registry import StepContext

    tiny.module = _with_outlier_channels(tiny.module)
    out = quantize_smoothquant(tiny, SmoothQuantW8A8(**SMALL), StepContext(data=text, workdir=tmp_path))
    tried = out.details["tried"]
    assert [t["alpha"] for t in tried] == list(ALPHAS) and all(t["split"] == "validation" for t in tried)
    assert out.details["alpha"] == min(tried, key=lambda t: t["metric"])["alpha"]
    assert out.details["calibration"]["split"] == "train"
    assert out.details["decision"]["chosen"] == min(t["metric"] for t in tried)
    assert "uint8" in out.details["initializer_bytes_by_dtype"]  # the 8-bit blocks
    assert out.model.metadata["encoding"] == "ortgenai"
    assert Path(out.model.metadata["ortgenai_dir"]).name.endswith(f"alpha{out.details['alpha']:g}")


def _int8_dot_product_cpu() -> bool:
    from sizewise.measure.environment import describe_environment

    flags = describe_environment().get("cpu_flags", {})
    return any(flags.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


@needs_genai
@pytest.mark.skipif(not _int8_dot_product_cpu(), reason="the int8-activation claim is checked on CPUs with VNNI/AMX")
def test_int8_activations_are_really_rounded_by_the_kernel(tiny, tokenizer, tmp_path):
    """accuracy level 4: the CPU kernel quantizes the activations, so the folder scores close to, but not exactly,
    the float-compute twin holding the same weights."""
    from sizewise.models.ortgenai import OrtGenAIModule, build, load_weights
    from sizewise.tasks.perplexity import perplexity

    folder = build(tiny.module, tokenizer, tmp_path / "int8", "int8", block_size=32)
    cfg = PerplexityConfig(context=32, stride=16)
    twin = perplexity(load_weights(copy.deepcopy(tiny.module), folder), tokenizer, LINES[8:16], cfg).token_perplexity
    ort = perplexity(OrtGenAIModule(folder, 1, tiny.module.config), tokenizer, LINES[8:16], cfg).token_perplexity
    assert ort != pytest.approx(twin, rel=1e-6) and ort == pytest.approx(twin, rel=0.02)


@needs_genai
def test_a_plan_saves_reloads_and_measures_the_folder_on_ort_genai(tiny, text, tmp_path):
    plan = sizewise.Plan((sizewise.Step("int8-smoothquant", SmoothQuantW8A8(alpha=0.5, **SMALL)),))
    result = sizewise.run(tiny, plan, data=text, out=tmp_path / "q", measure_config=FAST)
    after = result.after
    assert after.latency.runtime == "ortgenai" and "uint8" in after.size.memory_by_dtype
    assert after.metrics["perplexity"] == pytest.approx(result.before.metrics["perplexity"], rel=0.05)
    details = json.loads((tmp_path / "q" / "card.json").read_text())["steps"][0]["details"]
    assert details["alpha"] == 0.5 and details["decision"]["metric"] is None  # given, not chosen
    reloaded = sizewise.load(str(tmp_path / "q"))
    from sizewise.measure.ortgenai import own_folder

    assert own_folder(reloaded) == str((tmp_path / "q" / "model").resolve())


@needs_genai
def test_cli_quantize_with_alpha(tmp_path):
    from typer.testing import CliRunner

    from reliability.kill_harness import tiny_causal_lm
    from sizewise.cli.app import app

    model_dir, text_dir = tiny_causal_lm(tmp_path / "tiny")
    out = tmp_path / "q"
    result = CliRunner().invoke(app, ["quantize", str(model_dir), "--data", str(text_dir), "--method",
                                      "int8-smoothquant", "--alpha", "0.5", "--calibration-samples", "2", "--out",
                                      str(out), "--threads", "1", "--no-memory"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["steps"][0]["details"]["alpha"] == 0.5


# ------------------------------------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize(("fields", "message"), [
    ({"alpha": 1.5}, "alpha must be a number in"),
    ({"alpha": True}, "alpha must be a number in"),
    ({"group_size": 48}, "block size must be one of"),
    ({"runtime": "llamacpp"}, "pass --runtime ortgenai"),
    ({"eval_tokens": 0}, "eval tokens must be a positive integer"),
])
def test_bad_options_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        SmoothQuantW8A8(**fields)


@needs_genai
def test_smoothing_without_text_says_how_to_go_on(tiny, tmp_path):
    from sizewise.compress.quantize.smoothquant import quantize_smoothquant
    from sizewise.compress.registry import StepContext

    with pytest.raises(DataError, match="calibrates its smoothing on text") as info:
        quantize_smoothquant(tiny, SmoothQuantW8A8(), StepContext(workdir=tmp_path))
    assert "--alpha 0" in info.value.hint


def test_the_method_is_registered_for_the_ortgenai_runtime():
    from sizewise.compress.registry import get_method

    method = get_method("int8-smoothquant")
    assert method.family == "quantize" and method.kernel == "int8" and method.runtimes == ("ortgenai",)
    assert "alpha" in method.options


@needs_genai
def test_a_decode_step_reads_one_row_of_the_float_embedding_not_the_table(tiny, tokenizer, tmp_path):
    """The int8 folder keeps the token embedding (float32, looked up by a Gather) apart from the 8-bit output
    matrix: the roofline counts one row of it per step, on ORT GenAI and on the untied torch twin alike."""
    from sizewise.measure.llm import step_read_bytes, weights_bytes
    from sizewise.measure.ortgenai import bytes_by_dtype
    from sizewise.measure.ortgenai import step_read_bytes as folder_read_bytes
    from sizewise.models.ortgenai import build, load_weights

    table = tiny.module.model.embed_tokens.weight
    table_bytes, row_bytes = table.numel() * 4, table.shape[1] * 4
    assert step_read_bytes(tiny.module) == weights_bytes(tiny.module)  # tied: the table is the output matrix
    folder = build(tiny.module, tokenizer, tmp_path / "int8", "int8", block_size=32)
    assert folder_read_bytes(folder) == sum(bytes_by_dtype(folder).values()) - table_bytes + row_bytes
    twin = load_weights(copy.deepcopy(tiny.module), folder)
    assert step_read_bytes(twin) == weights_bytes(twin) - table_bytes + row_bytes
