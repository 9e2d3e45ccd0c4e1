"""Quantization: int8 dynamic/static, int8/int4 weight-only, fp16/bf16 and QAT, on onnxruntime or torch, with
per-layer sensitivity and automatic fallback to float for the layers that break the accuracy budget."""

from sizewise.compress.quantize.config import (
    HalfPrecision,
    Int8Dynamic,
    Int8Static,
    QuantizationAwareTraining,
    WeightOnly,
)
from sizewise.compress.quantize.llm import LLMWeightInt4, is_causal_lm, llm_search, quantize_llm
from sizewise.compress.quantize.ortgenai import OrtGenAIInt4, quantize_ortgenai
from sizewise.compress.quantize.smoothquant import SmoothQuantW8A8, quantize_smoothquant, smoothquant_search
from sizewise.compress.quantize.step import onnx_variant, quantize_step
from sizewise.compress.registry import Method, register


def _runtime(space) -> str:
    return space.runtime if space.runtime in ("onnxruntime", "torch") else "onnxruntime"


def _int8_dynamic_search(trial, space) -> Int8Dynamic:
    """On onnxruntime, per-tensor or per-channel weight scales: per channel can keep more accuracy (MiniLM on STS-B:
    benchmarks/results/minilm_composed.md), and whether its kernels are as fast is left to the measurement. torch's
    int8 kernel (torchao) always scales per row, so the choice is not offered there. Listed per channel first so the
    initial design (the middle of each space) starts from per tensor, the default."""
    runtime = _runtime(space)
    per_channel = runtime == "onnxruntime" and trial.suggest_categorical("int8-dynamic.per_channel", [True, False])
    return Int8Dynamic(runtime=runtime, per_channel=per_channel)


def _is_onnx(config) -> bool:
    return config.runtime == "onnxruntime"


_COMMON = {"family": "quantize", "apply": quantize_step, "makes_onnx": _is_onnx, "accepts_onnx": True,
           "breaks": frozenset({"sparse", "shared"})}
register(Method("int8-dynamic", config=Int8Dynamic, kernel="int8", summary="int8 weights, activations quantized per batch at run "
                "time", options=("runtime", "per_channel"), search=_int8_dynamic_search,
                **_COMMON))
register(Method("int8-static", config=Int8Static, kernel="int8", summary="int8 weights and activations, ranges calibrated on the "
                "train split", needs_data=True, runtimes=("onnxruntime",),
                options=("runtime", "calibration", "calibration_samples", "per_channel"),
                search=lambda t, s: Int8Static(calibration_samples=64),
                applies=lambda s: s.runtime == "onnxruntime", **_COMMON))
register(Method("int8-weight", config=WeightOnly, kernel="int8", preset={"bits": 8}, summary="int8 weight-only, grouped scales",
                runtimes=("onnxruntime",), options=("group_size", "runtime"), **_COMMON))
register(Method("int4-weight", config=WeightOnly, kernel="int4", preset={"bits": 4}, summary="int4 weight-only, grouped and packed",
                runtimes=("onnxruntime",), options=("group_size", "runtime"),
                search=lambda t, s: WeightOnly(bits=4, group_size=t.suggest_categorical("int4-weight.group_size",
                                                                                          [32, 128])),
                applies=lambda s: s.runtime == "onnxruntime" and s.input_kind == "tokens", **_COMMON))
register(Method("fp16", config=HalfPrecision, kernel="float16", preset={"dtype": "fp16"}, summary="fp16 weights and compute",
                options=("runtime",), search=lambda t, s: HalfPrecision("fp16", runtime=_runtime(s)), **_COMMON))
register(Method("bf16", config=HalfPrecision, kernel="bfloat16", preset={"dtype": "bf16"}, summary="bf16 weights and compute (torch)",
                runtimes=("torch",), options=("runtime",),
                search=lambda t, s: HalfPrecision("bf16", runtime="torch"), applies=lambda s: s.runtime == "torch",
                **_COMMON))
register(Method("qat", config=QuantizationAwareTraining, kernel="int8", summary="quantization-aware training, then int8-static",
                needs_data=True, trains=True, runtimes=("onnxruntime",),
                options=("epochs", "lr", "calibration", "calibration_samples"), **_COMMON))

_LLM = {"family": "quantize", "apply": quantize_llm, "config": LLMWeightInt4, "runtimes": ("llamacpp",),
        "encoding": "gguf", "kernel": "int4", "applies": is_causal_lm,
        "options": ("group_size", "symmetric", "calibration_samples", "max_bytes", "keep_8bit")}
register(Method("int4-rtn", preset={"algorithm": "rtn"}, summary="causal LMs: int4 weights rounded to nearest "
                "(GGUF Q4_1/Q4_0 for llama.cpp), the baseline", search=llm_search("int4-rtn", "rtn"), **_LLM))
register(Method("int4-awq", preset={"algorithm": "awq+scale-estimation"}, needs_data=True,
                summary="causal LMs: int4 weights calibrated by NNCF AWQ + scale estimation (GGUF for llama.cpp)",
                search=llm_search("int4-awq", "awq+scale-estimation"), **_LLM))
register(Method("int4-ortgenai", family="quantize", apply=quantize_ortgenai, config=OrtGenAIInt4, kernel="int4",
                runtimes=("ortgenai",), encoding="ortgenai",
                options=("group_size", "symmetric", "accuracy_level", "runtime"),
                summary="causal LMs: int4 MatMulNBits weights built by ONNX Runtime GenAI's model builder (round to "
                        "nearest), run on ORT GenAI"))
register(Method("int8-smoothquant", family="quantize", apply=quantize_smoothquant, config=SmoothQuantW8A8, kernel="int8",
                runtimes=("ortgenai",), encoding="ortgenai", applies=is_causal_lm,
                options=("alpha", "group_size", "calibration_samples", "runtime"), search=smoothquant_search,
                summary="causal LMs: W8A8 - SmoothQuant scales folded into the norms, int8 MatMulNBits weights and "
                        "int8 activations on ORT GenAI; alpha chosen on validation"))

__all__ = ["LLMWeightInt4", "OrtGenAIInt4", "SmoothQuantW8A8", "HalfPrecision", "Int8Dynamic", "Int8Static", "QuantizationAwareTraining", "WeightOnly", "onnx_variant"]
