"""Quantization: int8 dynamic/static, int8/int4 weight-only, fp16/bf16, on onnxruntime or torch, with per-layer
sensitivity and automatic fallback to float for the layers that break the accuracy budget."""

from sizewise.compress.quantize.api import QuantizeResult, quantize
from sizewise.compress.quantize.config import (
    HalfPrecision,
    Int8Dynamic,
    Int8Static,
    QuantizationAwareTraining,
    WeightOnly,
)

__all__ = ["HalfPrecision", "Int8Dynamic", "Int8Static", "QuantizationAwareTraining", "QuantizeResult", "WeightOnly",
           "quantize"]
