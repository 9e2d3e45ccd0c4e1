"""The quantization handler every plan runs: quantize on the deployment runtime, check on the validation split,
and fall back layer by layer until the run's accuracy budget holds.

On onnxruntime: export (unless the model is already a graph), calibrate on the train split (never the test split),
quantize, and when the budget is missed rank the layers by sensitivity and keep the k most sensitive in float for
k = 1, 2, 4, ... until it holds; if nothing holds, the closest candidate is handed back and the details say so. On
torch: PyTorch's own kernels (torchao int8, fp16/bf16). Measuring and the before/after cards are the executor's.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import replace
from pathlib import Path

from sizewise.compress.quantize.calibration import calibration_batches
from sizewise.compress.quantize.config import Int8Static, QuantizationAwareTraining, WeightOnly
from sizewise.compress.quantize.sensitivity import fallback_steps, layer_sensitivity
from sizewise.compress.registry import StepContext, StepOutput
from sizewise.core.budget import points, quality_drop
from sizewise.core.errors import ConfigError
from sizewise.core.serialize import to_dict
from sizewise.models.loaded import LoadedModel


def onnx_variant(loaded: LoadedModel, path: Path) -> LoadedModel:
    """``loaded`` with its module replaced by the ONNX graph at ``path`` (tokenizer and input spec kept)."""
    from sizewise.models.onnx_module import OnnxModule

    variant = copy.copy(loaded)
    variant.module = OnnxModule(path)
    if variant.inputs.kind == "onnx":
        variant.inputs = replace(variant.inputs, onnx_inputs=variant.module.input_specs)
    variant.arch = None
    return variant


def quantize_step(loaded: LoadedModel, config, ctx: StepContext) -> StepOutput:
    details: dict = {}
    if isinstance(config, QuantizationAwareTraining):
        from sizewise.compress.quantize.qat import train_quantization_aware

        ctx.progress("quantization-aware training")
        loaded = copy.copy(loaded)
        loaded.module = copy.deepcopy(loaded.module)
        details["qat"] = train_quantization_aware(loaded, config, ctx)
        config = config.static()
    if config.runtime == "torch":
        from sizewise.compress.quantize.torch_backend import quantize_torch

        chosen, torch_details = quantize_torch(loaded, config)
        return StepOutput(chosen, details | torch_details)
    workdir = ctx.workdir or Path(tempfile.mkdtemp(prefix="sizewise-quantize-"))  # in memory: lives with the process
    workdir.mkdir(parents=True, exist_ok=True)
    return _quantize_onnx(loaded, config, ctx, workdir, details)


def _quantize_onnx(loaded: LoadedModel, config, ctx: StepContext, workdir: Path, details: dict) -> StepOutput:
    from sizewise.compress.quantize.onnx_backend import (
        check_calibration,
        quantizable_nodes,
        quantize_onnx,
        unquantizable_nodes,
    )
    from sizewise.models.convert import to_onnx
    from sizewise.tasks import evaluate, primary_metric

    data = ctx.data
    fp32_path = Path(loaded.module.path) if loaded.is_onnx else to_onnx(loaded, workdir / "fp32.onnx")
    fp32 = onnx_variant(loaded, fp32_path)
    batches = None
    if isinstance(config, Int8Static) or (ctx.budget is not None and data is not None):
        samples = getattr(config, "calibration_samples", 32)
        batches = calibration_batches(loaded, data, samples)
        check_calibration(fp32_path, batches)
    nodes = quantizable_nodes(fp32_path, config)
    unsupported = unquantizable_nodes(fp32_path, nodes)
    name = _name(config)
    if not nodes:
        raise ConfigError(f"{name} finds no layer it can quantize in '{loaded.reference}': "
                          f"{', '.join(sorted({op for _, op in unsupported})) or 'no weights'} stay float",
                          hint="weight-only covers MatMul and embedding (Gather) layers; for convolutional "
                               "models use int8-static or int8-dynamic")
    split = data.decision_split if data is not None else None

    def score(candidate: LoadedModel) -> dict:
        return evaluate(candidate, data, split=split, limit=ctx.eval_limit)

    baseline_metrics = score(fp32) if data is not None else {}
    metric = primary_metric(baseline_metrics)
    baseline = baseline_metrics.get(metric)
    rows, tried, chosen = [], [], None
    for k in fallback_steps(len(nodes)):
        if k and not rows:  # the full model missed the budget: now rank the layers
            rows = layer_sensitivity(fp32_path, config, batches, nodes,
                                     (lambda p: score(onnx_variant(loaded, p))[metric]) if metric else None,
                                     points(metric, baseline) if metric else None, ctx.progress)
        exclude = [r.node for r in rows[:k]]
        ctx.progress(f"quantizing with {k} layer(s) kept in float")
        path = quantize_onnx(fp32_path, workdir / f"{name}-float{k}.onnx", config, batches, exclude=exclude)
        candidate = onnx_variant(loaded, path)
        value = score(candidate)[metric] if metric else None
        tried.append({"kept_in_float": k, "metric": value, "split": split})
        if chosen is None or (value is not None and quality_drop(metric, chosen[1], value) < 0):  # better
            chosen = (candidate, value, exclude)
        if metric is None or ctx.budget is None or ctx.budget.allows(metric, baseline, value):
            chosen = (candidate, value, exclude)
            break
    model, value, kept = chosen
    meets = None if metric is None or ctx.budget is None else ctx.budget.allows(metric, baseline, value)
    return StepOutput(model, details | {
        "quantized_nodes": len(nodes) - len(kept), "nodes": len(nodes), "kept_in_float": kept,
        "not_quantizable_by_method": [f"{n} ({op})" for n, op in unsupported], "tried": tried,
        "sensitivity": to_dict(rows), "decision": {"metric": metric, "split": split, "baseline": baseline,
                                                   "chosen": value, "meets_budget": meets}})


def _name(config) -> str:
    if isinstance(config, WeightOnly):
        return f"int{config.bits}-weight"
    return getattr(config, "dtype", None) or type(config).__name__.lower()
