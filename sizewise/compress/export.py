"""Runtime steps: ``onnx-export`` (the model as an ONNX graph, run by onnxruntime) and ``ort-optimize`` (onnxruntime's
graph optimizations written into the file: the transformer fusions of ``onnxruntime.transformers.optimizer`` for
BERT-family encoders, the runtime's own level-2 graph rewrites for everything else).

Both are onnxruntime's own code; sizewise only decides when to apply them and keeps the input spec and tokenizer.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sizewise.compress.quantize.step import onnx_variant
from sizewise.compress.registry import Method, StepContext, StepOutput, register
from sizewise.core.errors import ConfigError
from sizewise.core.optional import require

LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class OnnxExport:
    seq_len: int | None = None  # the example length traced (dynamic in the graph either way)


@dataclass(frozen=True)
class OrtOptimize:
    level: str = "extended"  # onnxruntime's graph optimization level written into the file
    transformer_fusion: bool = True  # BERT-family encoders: attention/LayerNorm/GELU fusions

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"unknown optimization level '{self.level}'", hint=f"choose one of: {', '.join(LEVELS)}")


def _workdir(ctx: StepContext) -> Path:
    workdir = ctx.workdir or Path(tempfile.mkdtemp(prefix="sizewise-onnx-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def export_step(loaded, config: OnnxExport, ctx: StepContext) -> StepOutput:
    from sizewise.models.convert import to_onnx

    if loaded.is_onnx:
        return StepOutput(loaded, {"already_onnx": True})
    path = to_onnx(loaded, _workdir(ctx) / "model.onnx", seq_len=config.seq_len)
    return StepOutput(onnx_variant(loaded, path), {"file": path.name})


def _is_bert(loaded) -> bool:
    config = getattr(loaded.metadata.get("hf_config"), "model_type", None) or loaded.metadata.get("model_type")
    return loaded.inputs.kind == "tokens" and (config in (None, "bert", "roberta", "distilbert"))


def optimize_step(loaded, config: OrtOptimize, ctx: StepContext) -> StepOutput:
    ort = require("onnxruntime", "onnx", "graph optimization")
    exported = export_step(loaded, OnnxExport(), ctx).model
    source = Path(exported.module.path)
    target = _workdir(ctx) / "optimized.onnx"
    if config.transformer_fusion and _is_bert(loaded):
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(str(source), model_type="bert", opt_level=0)
        optimized.save_model_to_file(str(target))
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        return StepOutput(onnx_variant(loaded, target), {"fusion": "bert", "fused_operators": fused})
    options = ort.SessionOptions()
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[config.level]
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return StepOutput(onnx_variant(loaded, target), {"level": config.level})


register(Method("onnx-export", "runtime", OnnxExport, export_step, "export to ONNX, run by onnxruntime",
                runtimes=("onnxruntime",), accepts_onnx=True, makes_onnx=lambda _c: True))
register(Method("ort-optimize", "runtime", OrtOptimize, optimize_step,
                "onnxruntime graph optimizations written into the file (BERT fusions for encoders)",
                runtimes=("onnxruntime",), accepts_onnx=True, makes_onnx=lambda _c: True, options=("level",),
                search=lambda t, s: OrtOptimize(), applies=lambda s: s.runtime == "onnxruntime"))
