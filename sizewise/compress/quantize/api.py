"""``sizewise.quantize``: quantize, verify on held-out data, fall back layer by layer until the budget holds.

Three cards make the evidence: the fp32 model on torch eager, the fp32 model on the deployment runtime, and the
quantized artifact (reloaded from disk) on that runtime, all measured the same way in the same run, so speed and size
are ratios against measured baselines.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sizewise.compress.quantize.calibration import calibration_batches
from sizewise.compress.quantize.config import (
    HalfPrecision,
    Int8Dynamic,
    Int8Static,
    QuantizationAwareTraining,
    WeightOnly,
)
from sizewise.compress.quantize.sensitivity import LayerSensitivity, fallback_steps, layer_sensitivity
from sizewise.core.budget import Budget, points
from sizewise.core.errors import ConfigError
from sizewise.core.serialize import to_dict, write_json_atomic
from sizewise.measure import MeasureConfig, ModelCard, measure
from sizewise.models.artifact import save_model
from sizewise.models.loaded import LoadedModel

SCHEMA = "sizewise.quantization/1"


@dataclass(frozen=True)
class Verdict:
    metric: str | None
    baseline: float | None
    value: float | None
    drop_points: float | None
    allowed_points: float | None
    meets_budget: bool | None  # None when no budget or no data was given
    message: str


@dataclass(frozen=True)
class QuantizeResult:
    method: str
    config: Any
    torch_fp32: ModelCard | None
    before: ModelCard  # fp32 on the deployment runtime
    after: ModelCard
    verdict: Verdict
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    kept_in_float: list[str] = field(default_factory=list)
    tried: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    model_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "method": self.method, "config": to_dict(self.config),
                "torch_fp32": self.torch_fp32 and self.torch_fp32.to_dict(), "before": self.before.to_dict(),
                "after": self.after.to_dict(), "verdict": to_dict(self.verdict),
                "sensitivity": to_dict(self.sensitivity), "kept_in_float": self.kept_in_float,
                "tried": self.tried, "details": to_dict(self.details), "model_dir": str(self.model_dir)}


METHOD_NAMES = {Int8Dynamic: "int8-dynamic", Int8Static: "int8-static", QuantizationAwareTraining: "qat"}


def method_name(config) -> str:
    if isinstance(config, WeightOnly):
        return f"int{config.bits}-weight"
    if isinstance(config, HalfPrecision):
        return config.dtype
    return METHOD_NAMES[type(config)]


def onnx_variant(loaded: LoadedModel, path: Path) -> LoadedModel:
    """``loaded`` with its module replaced by the ONNX graph at ``path`` (tokenizer and input spec kept)."""
    from sizewise.models.onnx_module import OnnxModule

    variant = copy.copy(loaded)
    variant.module = OnnxModule(path)
    if variant.inputs.kind == "onnx":
        variant.inputs = replace(variant.inputs, onnx_inputs=variant.module.input_specs)
    variant.arch = None
    return variant


def _verdict(metric, baseline, value, budget: Budget | None) -> Verdict:
    if metric is None or value is None:
        return Verdict(None, None, None, None, None, None, "no held-out data: accuracy was not checked")
    drop = points(metric, baseline) - points(metric, value)
    if budget is None:
        return Verdict(metric, baseline, value, drop, None, None, f"{metric} changed by {-drop:+.2f} points")
    allowed = budget.allowed_drop(metric, baseline)
    ok = drop <= allowed + 1e-9
    word = "meets" if ok else "does NOT meet"
    return Verdict(metric, baseline, value, drop, allowed, ok,
                   f"{word} the budget: {metric} {points(metric, value):.2f} vs {points(metric, baseline):.2f} "
                   f"(drop {drop:.2f} points, allowed {allowed:.2f})")


def quantize(loaded: LoadedModel, config, out: str | Path, dataset=None, max_drop: Budget | None = None,
             measure_config: MeasureConfig | None = None, eval_limit: int | None = None,
             sensitivity: bool = True, progress=None) -> QuantizeResult:
    from sizewise.tasks import check_compatible, evaluate

    step = progress or (lambda _msg: None)
    out = Path(out)
    runtime = config.runtime
    mc = measure_config or MeasureConfig()
    if dataset is not None:
        check_compatible(loaded, dataset)
    step("measuring fp32 on torch eager")
    torch_fp32 = None if loaded.is_onnx else measure(loaded, replace(mc, runtime="torch"), dataset=dataset)
    metric = next((k for k in (torch_fp32.metrics if torch_fp32 else {}) if k != "examples"), None)

    def metric_of(candidate: LoadedModel) -> float:
        return evaluate(candidate, dataset, limit=eval_limit)[metric]

    qat_details = {}
    if isinstance(config, QuantizationAwareTraining):
        from sizewise.compress.quantize.qat import train_quantization_aware

        step("quantization-aware training")
        loaded = copy.copy(loaded)
        loaded.module = copy.deepcopy(loaded.module)
        qat_details = train_quantization_aware(loaded, config, dataset)
        config_used, config = config, config.static()
    else:
        config_used = config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if runtime == "torch":
            from sizewise.compress.quantize.torch_backend import quantize_torch

            before = torch_fp32
            chosen, details = quantize_torch(loaded, config)
            kept, tried, rows = details.get("kept_in_float", []), [], []
        else:
            from sizewise.compress.quantize.onnx_backend import (
                check_calibration,
                quantizable_nodes,
                quantize_onnx,
                unquantizable_nodes,
            )
            from sizewise.models.convert import to_onnx

            fp32_path = Path(loaded.module.path) if loaded.is_onnx else to_onnx(loaded, tmp / "fp32.onnx")
            fp32 = onnx_variant(loaded, fp32_path)
            step("measuring fp32 on onnxruntime")
            before = measure(fp32, mc, dataset=dataset)
            metric = metric or next((k for k in before.metrics if k != "examples"), None)
            batches = None
            if isinstance(config, Int8Static) or (sensitivity and dataset is not None):
                batches = calibration_batches(loaded, dataset, getattr(config, "calibration_samples", 32))
                check_calibration(fp32_path, batches)
            nodes = quantizable_nodes(fp32_path, config)
            unsupported = unquantizable_nodes(fp32_path, nodes)
            if not nodes:
                raise ConfigError(f"{method_name(config)} finds no layer it can quantize in '{loaded.reference}': "
                                  f"{', '.join(sorted({op for _, op in unsupported})) or 'no weights'} stay float",
                                  hint="weight-only covers MatMul and embedding (Gather) layers; for convolutional "
                                       "models use --method int8-static or int8-dynamic")
            baseline = metric_of(fp32) if metric else None
            rows, tried, kept = [], [], []
            chosen = None
            for k in fallback_steps(len(nodes)):
                if k and not rows:  # the full model missed the budget: now rank the layers
                    rows = layer_sensitivity(fp32_path, config, batches, nodes,
                                             (lambda p: metric_of(onnx_variant(loaded, p))) if metric else None,
                                             points(metric, baseline) if metric else None, step)
                exclude = [r.node for r in rows[:k]]
                step(f"quantizing with {k} layer(s) kept in float")
                path = quantize_onnx(fp32_path, tmp / f"q{k}.onnx", config, batches, exclude=exclude)
                candidate = onnx_variant(loaded, path)
                value = metric_of(candidate) if metric else None
                tried.append({"kept_in_float": k, "metric": value})
                if chosen is None or (value is not None and value > chosen[1]):
                    chosen = (candidate, value, exclude)
                if metric is None or max_drop is None or max_drop.allows(metric, baseline, value):
                    chosen = (candidate, value, exclude)
                    break
            chosen, _, kept = chosen
            details = {"quantized_nodes": len(nodes) - len(kept), "nodes": len(nodes),
                       "not_quantizable_by_method": [f"{name} ({op})" for name, op in unsupported]}
        model_dir = save_model(chosen, out / "model")
    from sizewise.models.loader import load

    step("measuring the saved quantized model")
    after = measure(load(str(out)), mc if runtime == "onnxruntime" else replace(mc, runtime="torch"), dataset=dataset)
    base_value = before.metrics.get(metric) if metric else None
    verdict = _verdict(metric, base_value, after.metrics.get(metric) if metric else None, max_drop)
    result = QuantizeResult(method_name(config_used), config_used, torch_fp32, before, after, verdict, rows, kept,
                            tried, details | qat_details, model_dir)
    write_json_atomic(out / "card.json", result.to_dict())
    return result
