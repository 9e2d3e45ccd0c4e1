"""Quantization on PyTorch eager: int8 Linear layers through torchao (int8 weights per row, activations quantized per
token on the fly, ``torch._int_mm``; see :mod:`sizewise.models.torch_quant`) and fp16/bf16."""

from __future__ import annotations

import copy

import torch

from sizewise.compress.quantize.config import HalfPrecision, Int8Dynamic
from sizewise.core.errors import ConfigError
from sizewise.models.loaded import LoadedModel
from sizewise.models.torch_quant import dynamic_linear_modules, quantize_dynamic_int8

INT8_KERNEL = "torchao Int8DynamicActivationInt8WeightConfig (torch._int_mm)"


def quantize_torch(loaded: LoadedModel, config) -> tuple[LoadedModel, dict]:
    result = copy.copy(loaded)
    result.inputs = copy.copy(loaded.inputs)
    if isinstance(config, Int8Dynamic):
        module = quantize_dynamic_int8(copy.deepcopy(loaded.module))
        layers = dynamic_linear_modules(module)
        if not layers:
            raise ConfigError(f"'{loaded.reference}' has no Linear layers for torch dynamic int8",
                              hint="use --runtime onnxruntime, which also quantizes convolutions")
        result.module = module
        kept = [n for n, m in module.named_modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))
                or (isinstance(m, torch.nn.Linear) and n not in layers)]  # e.g. attention out-projections
        return result, {"quantized_layers": sorted(layers), "kept_in_float": kept, "kernel": INT8_KERNEL}
    if isinstance(config, HalfPrecision):
        dtype = torch.float16 if config.dtype == "fp16" else torch.bfloat16
        result.module = copy.deepcopy(loaded.module).to(dtype)
        if result.inputs.kind == "tensor":
            result.inputs.dtype = "float16" if config.dtype == "fp16" else "bfloat16"
        return result, {"dtype": str(dtype)}
    raise TypeError(f"not a torch quantization config: {config!r}")
