"""Quantization methods as frozen, self-validating configs."""

from __future__ import annotations

from dataclasses import dataclass

from sizewise.core.errors import ConfigError

RUNTIMES = ("onnxruntime", "torch")
CALIBRATIONS = ("minmax", "percentile", "entropy")


def _check_runtime(runtime: str, allowed: tuple[str, ...], method: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime '{runtime}'", hint=f"choose one of: {', '.join(RUNTIMES)}")
    if runtime not in allowed:
        raise ConfigError(f"{method} is not available on {runtime}", hint=f"use --runtime {' or '.join(allowed)}")


@dataclass(frozen=True)
class Int8Dynamic:
    """int8 weights, activations quantized on the fly per batch: no calibration data needed."""

    runtime: str = "onnxruntime"
    per_channel: bool = False

    def __post_init__(self) -> None:
        _check_runtime(self.runtime, RUNTIMES, "int8-dynamic")


@dataclass(frozen=True)
class Int8Static:
    """int8 weights and activations; activation ranges calibrated on a sample of the user's data."""

    runtime: str = "onnxruntime"
    calibration: str = "minmax"
    calibration_samples: int = 128
    per_channel: bool = True
    symmetric_activations: bool = False
    format: str = "qdq"  # ONNX: QuantizeLinear/DequantizeLinear pairs, fused into int8 kernels by the runtime

    def __post_init__(self) -> None:
        _check_runtime(self.runtime, ("onnxruntime",), "int8-static")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration '{self.calibration}'",
                              hint=f"choose one of: {', '.join(CALIBRATIONS)}")
        if not isinstance(self.calibration_samples, int) or self.calibration_samples < 1:
            raise ConfigError(f"calibration_samples must be a positive integer, got {self.calibration_samples!r}")
        if self.format not in ("qdq", "qoperator"):
            raise ConfigError(f"unknown format '{self.format}'", hint="choose qdq or qoperator")


@dataclass(frozen=True)
class WeightOnly:
    """int8 or int4 weights in groups along the input dimension, each group with its own scale; activations stay
    float. The packed weights are what is stored, so bytes on disk drop ~4x (int8) or ~7x (int4)."""

    bits: int = 4
    group_size: int = 32
    runtime: str = "onnxruntime"
    embeddings: bool = True  # also quantize embedding tables (Gather), often half of a small encoder's bytes

    def __post_init__(self) -> None:
        _check_runtime(self.runtime, ("onnxruntime",), f"int{self.bits}-weight")
        if self.bits not in (4, 8):
            raise ConfigError(f"weight-only quantization supports 4 or 8 bits, got {self.bits}")
        if self.group_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"group_size must be one of 16, 32, 64, 128, 256, got {self.group_size}")


@dataclass(frozen=True)
class HalfPrecision:
    """fp16 or bf16 weights and compute."""

    dtype: str = "fp16"
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if self.dtype not in ("fp16", "bf16"):
            raise ConfigError(f"unknown half-precision dtype '{self.dtype}'", hint="choose fp16 or bf16")
        _check_runtime(self.runtime, ("torch", "onnxruntime") if self.dtype == "fp16" else ("torch",),
                       self.dtype)


@dataclass(frozen=True)
class QuantizationAwareTraining:
    """Fine-tune with weights fake-quantized to int8 (per output channel, symmetric, straight-through gradients),
    then export int8-static on onnxruntime: the weights are already on the grid ORT uses, so rounding costs nothing
    and training has adapted the model to it."""

    epochs: int = 2
    lr: float = 5e-4
    calibration: str = "minmax"
    calibration_samples: int = 128
    runtime: str = "onnxruntime"

    def __post_init__(self) -> None:
        _check_runtime(self.runtime, ("onnxruntime",), "qat")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"QAT needs at least one epoch, got {self.epochs!r}")
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr!r}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration '{self.calibration}'",
                              hint=f"choose one of: {', '.join(CALIBRATIONS)}")

    def static(self) -> Int8Static:
        return Int8Static(runtime=self.runtime, calibration=self.calibration,
                          calibration_samples=self.calibration_samples, per_channel=True)
