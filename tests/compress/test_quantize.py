import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.compress.quantize import HalfPrecision, Int8Dynamic, Int8Static, WeightOnly
from sizewise.compress.quantize.sensitivity import fallback_steps
from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError, DataError
from sizewise.pipeline.record import verdict_for

BUDGET = Budget.parse("0.5pp")


def quantize(loaded, config, out, dataset=None, max_drop=None, measure_config=None):
    """One quantization step, run by the one executor as `sizewise quantize` runs it: the fp32 model measured on the
    deployment runtime (and on torch eager), the step, and the reloaded artifact measured the same way."""
    from dataclasses import replace

    from sizewise.measure.api import MeasureConfig
    from sizewise.pipeline.executor import RunOptions, run
    from sizewise.pipeline.plan import Plan

    mc = replace(measure_config or MeasureConfig(), runtime=config.runtime)
    return run(loaded, Plan.of(config), dataset, out, RunOptions(
        measure=mc, budget=max_drop, references=("torch",) if config.runtime != "torch" else (), kind="quantize"))


@pytest.mark.parametrize("config, max_fraction", [
    (Int8Dynamic(), 0.35),
    (Int8Static(calibration_samples=64), 0.35),
    (Int8Static(calibration="percentile", calibration_samples=64, format="qoperator"), 0.35),
    (HalfPrecision("fp16", "onnxruntime"), 0.55),
    (Int8Dynamic(runtime="torch"), 0.40),  # convolutions stay float on torch dynamic int8
    (HalfPrecision("fp16"), 0.55),
    (HalfPrecision("bf16"), 0.55),
])
def test_method_runtime_pairs_shrink_keep_accuracy_and_reload(config, max_fraction, trained_digits_dir, digits,
                                                              quick, tmp_path):
    result = quantize(sizewise.load(trained_digits_dir), config, tmp_path, dataset=digits, max_drop=BUDGET,
                      measure_config=quick)
    assert result.after.size.disk_bytes <= max_fraction * result.before.size.disk_bytes
    assert result.verdict.meets_budget is True
    assert result.after.latency.runtime == config.runtime
    reloaded = sizewise.load(tmp_path)  # the artifact reloads and is the model that was evaluated
    assert sizewise.evaluate(reloaded, digits)["accuracy"] == result.after.metrics["accuracy"]


def test_torch_int8_artifact_round_trips_exactly(trained_digits_dir, quick, tmp_path):
    from sizewise.compress.quantize.torch_backend import quantize_torch

    quantized, details = quantize_torch(sizewise.load(trained_digits_dir), Int8Dynamic(runtime="torch"))
    sizewise.save_model(quantized, tmp_path / "model")
    reloaded = sizewise.load(tmp_path)
    _assert_same_int8_layers(reloaded.module, quantized.module, details["quantized_layers"])
    x = quantized.example_inputs(4)
    assert torch.equal(reloaded.module(**x), quantized.module(**x))


def _assert_same_int8_layers(reloaded, quantized, names) -> None:
    """Every int8 Linear came back with the same integers and scales, bit for bit (torchao Int8Tensor weights)."""
    from sizewise.models.torch_quant import dynamic_linear_modules

    assert sorted(dynamic_linear_modules(reloaded)) == sorted(dynamic_linear_modules(quantized)) == sorted(names) != []
    for name in names:
        a, b = reloaded.get_submodule(name).weight, quantized.get_submodule(name).weight
        assert torch.equal(a.qdata, b.qdata) and torch.equal(a.scale, b.scale)


@pytest.fixture(scope="module")
def outlier_mlp(tmp_path_factory, digits):
    """An MLP whose fc1 has one huge weight on an input pixel that is 0 in every digit image: the float model is
    unaffected, but a per-tensor int8 scale stretched to 1000 rounds every other fc1 weight to zero."""
    assert float(np.abs(digits.split("train").inputs[:, 0, 0, 0]).max()) == 0.0
    loaded = sizewise.load("tiny_models:tiny_mlp")
    sizewise.train(loaded, digits, sizewise.TrainConfig(epochs=8, seed=0))
    with torch.no_grad():
        loaded.module.fc1.weight[0, 0] = 1000.0
    path = tmp_path_factory.mktemp("outlier")
    sizewise.save_model(loaded, path / "model")
    return path


def test_fallback_keeps_the_sensitive_layer_in_float(outlier_mlp, digits, quick, tmp_path):
    result = quantize(sizewise.load(outlier_mlp), Int8Dynamic(), tmp_path, dataset=digits, max_drop=BUDGET,
                      measure_config=quick)
    tried, rows, kept = (result.details[k] for k in ("tried", "sensitivity", "kept_in_float"))
    assert tried[0]["kept_in_float"] == 0 and tried[0]["metric"] < 0.5  # all-int8 collapses (on validation)
    assert tried[0]["split"] == "validation" and result.after.metrics["split"] == "test"
    assert rows[0]["node"] == kept[0]
    assert "fc1" in rows[0]["node"].lower() or "gemm" in rows[0]["op_type"].lower()
    assert rows[0]["output_error"] > 10 * rows[-1]["output_error"]
    assert result.verdict.meets_budget and kept == [rows[0]["node"]]
    assert result.after.size.memory_by_dtype.get("int8", 0) >= 16 * 10  # fc2 is int8 (tiny: no bytes saved overall)


def test_fallback_steps_double():
    assert fallback_steps(0) == [0]
    assert fallback_steps(5) == [0, 1, 2, 4, 5]
    assert fallback_steps(8) == [0, 1, 2, 4, 8]


def test_verdict_says_when_the_budget_is_missed():
    verdict = verdict_for({"spearman": 82.03}, {"spearman": 80.5, "split": "test"}, Budget.parse("0.01"))
    assert verdict.meets_budget is False and "does NOT meet" in verdict.message
    assert verdict.drop_points == pytest.approx(1.53) and verdict.allowed_points == pytest.approx(0.8203)


def test_weight_only_on_a_cnn_says_what_stays_float(trained_digits_dir, quick, tmp_path):
    with pytest.raises(ConfigError, match="finds no layer it can quantize") as info:
        quantize(sizewise.load(trained_digits_dir), WeightOnly(4), tmp_path, measure_config=quick)
    assert "Conv" in info.value.message and "int8-static" in info.value.hint


@pytest.mark.parametrize("make, message", [
    (lambda: Int8Static(runtime="torch"), "int8-static is not available on torch"),
    (lambda: WeightOnly(bits=3), "supports 4 or 8 bits"),
    (lambda: HalfPrecision("bf16", "onnxruntime"), "bf16 is not available on onnxruntime"),
    (lambda: Int8Dynamic(runtime="tflite"), "unknown runtime 'tflite'"),
    (lambda: Int8Static(calibration="kmeans"), "unknown calibration 'kmeans'"),
])
def test_unsupported_method_runtime_pairs(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_calibration_data_that_does_not_match(quick, tmp_path, digits):
    with pytest.raises(DataError, match="models made for digits"):
        quantize(sizewise.load("zoo:lenet5"), Int8Static(), tmp_path, dataset=digits, measure_config=quick)


def test_static_needs_data(trained_digits_dir, quick, tmp_path):
    with pytest.raises(ConfigError, match="needs data.*pass --data"):
        quantize(sizewise.load(trained_digits_dir), Int8Static(), tmp_path, measure_config=quick)


def test_cli_quantize(trained_digits_dir, tmp_path):
    from sizewise.cli.app import app

    result = CliRunner().invoke(app, ["quantize", str(trained_digits_dir), "--data", "digits", "--method",
                                      "int8-static", "--max-drop", "0.5pp", "--out", str(tmp_path), "--threads", "1",
                                      "--no-memory"])
    assert result.exit_code == 0, result.output
    assert "meets the budget" in result.output and "int8 dot-product instructions" in result.output
    bad = CliRunner().invoke(app, ["quantize", str(trained_digits_dir), "--max-drop", "1%", "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "--max-drop needs --data" in bad.output


def test_fake_quantizer_matches_the_int8_grid_and_passes_gradients():
    from sizewise.compress.quantize.qat import FakeQuantPerChannel

    w = torch.randn(4, 9, requires_grad=True)
    q = FakeQuantPerChannel()(w)
    scale = w.detach().abs().amax(1, keepdim=True) / 127
    ints = q.detach() / scale
    assert torch.allclose(ints, ints.round(), atol=1e-4) and float(ints.abs().max()) <= 127 + 1e-4
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight-through


def test_quantization_aware_training_exports_int8(trained_digits_dir, digits, quick, tmp_path):
    from sizewise.compress.quantize import QuantizationAwareTraining

    result = quantize(sizewise.load(trained_digits_dir), QuantizationAwareTraining(epochs=1, calibration_samples=64),
                      tmp_path, dataset=digits, max_drop=BUDGET, measure_config=quick)
    assert result.steps[0].method == "qat" and result.details["qat"]["qat_epochs"] == 1
    assert result.after.size.disk_bytes <= 0.35 * result.before.size.disk_bytes
    assert result.verdict.meets_budget


def test_sensitivity_is_shown_as_a_table_and_a_plot(outlier_mlp, digits, tmp_path):
    from sizewise.cli.app import app

    result = CliRunner().invoke(app, ["quantize", str(outlier_mlp), "--data", "digits", "--method", "int8-dynamic",
                                      "--max-drop", "0.5pp", "--out", str(tmp_path), "--threads", "1", "--no-memory"])
    assert result.exit_code == 0, result.output
    assert "per-layer sensitivity" in result.output and "fc1" in result.output
    page = (tmp_path / "report.html").read_text()
    assert 'id="sensitivity"' in page and page.count('class="bar"') == 2
    (tmp_path / "report.html").unlink()
    again = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert again.exit_code == 0 and (tmp_path / "report.html").exists()


def test_one_layer_alone_really_is_one_layer_for_weight_only(tiny_bert_dir, tmp_path):
    import onnx

    from sizewise.compress.quantize.onnx_backend import quantizable_nodes, quantize_onnx
    from sizewise.models.convert import to_onnx

    fp32 = to_onnx(sizewise.load(tiny_bert_dir), tmp_path / "fp32.onnx")
    nodes = [n for n, op in quantizable_nodes(fp32, WeightOnly(4, 16)) if op == "MatMul"]
    one = quantize_onnx(fp32, tmp_path / "one.onnx", WeightOnly(4, 16, embeddings=False), None, include=[nodes[0]])
    assert sum(n.op_type == "MatMulNBits" for n in onnx.load(str(one)).graph.node) == 1


def test_entropy_calibration_differs_from_minmax(trained_digits_dir, digits, tmp_path):
    import onnx
    from onnx import numpy_helper

    from sizewise.compress.quantize.calibration import calibration_batches
    from sizewise.compress.quantize.onnx_backend import quantize_onnx
    from sizewise.models.convert import to_onnx

    loaded = sizewise.load(trained_digits_dir)
    fp32 = to_onnx(loaded, tmp_path / "fp32.onnx")
    batches = calibration_batches(loaded, digits, 64)

    def scales(calibration):
        path = quantize_onnx(fp32, tmp_path / f"{calibration}.onnx", Int8Static(calibration=calibration), batches)
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if "scale" in i.name}

    minmax, entropy = scales("minmax"), scales("entropy")
    assert any(not np.allclose(minmax[k], entropy[k]) for k in minmax)  # KL search actually clipped some ranges


def test_torch_int8_hugging_face_model_saves_and_reloads(tiny_bert_dir, tmp_path):
    from sizewise.compress.quantize.torch_backend import quantize_torch

    quantized, details = quantize_torch(sizewise.load(tiny_bert_dir), Int8Dynamic(runtime="torch"))
    sizewise.save_model(quantized, tmp_path / "model")
    reloaded = sizewise.load(tmp_path)
    _assert_same_int8_layers(reloaded.module, quantized.module, details["quantized_layers"])
    x = quantized.example_inputs(2, 8)
    assert torch.equal(reloaded.module(**x).last_hidden_state, quantized.module(**x).last_hidden_state)
