"""Storing PyTorch dynamically-quantized (int8) Linear layers in safetensors, exactly.

``torch.ao`` packs int8 weights into opaque objects that safetensors cannot hold, and re-quantizing dequantized
weights does not give the same integers back (the symmetric scale is recomputed from a max that moved). So we store
each layer's int8 values, scale and zero point, and on load rebuild the quantized layer from exactly those.
"""

from __future__ import annotations

import torch
from torch import nn

QUANTIZED_LINEAR = "torch.ao dynamic int8 Linear"


def dynamic_linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {n: m for n, m in model.named_modules() if isinstance(m, DynamicLinear)}


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain-tensor state dict: float tensors as they are, each int8 Linear as int8 values + scale + zero point."""
    layers = dynamic_linear_modules(model)
    state = {k: v for k, v in model.state_dict().items()
             if isinstance(v, torch.Tensor) and not any(k.startswith(f"{n}.") for n in layers)}
    for name, layer in layers.items():
        weight = layer.weight()
        state[f"{name}.weight_int8"] = weight.int_repr()
        state[f"{name}.weight_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        state[f"{name}.weight_zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        if layer.bias() is not None:
            state[f"{name}.bias"] = layer.bias().detach()
    return state


def load_quantized_state(float_model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Quantize ``float_model``'s structure, then set every int8 Linear from ``state`` exactly."""
    names = {k.removesuffix(".weight_int8") for k in state if k.endswith(".weight_int8")}
    plain = {k: v for k, v in state.items() if not any(k.startswith(f"{n}.") for n in names)}
    float_model.load_state_dict(plain, strict=False)
    model = quantize_dynamic_int8(float_model)
    for name, layer in dynamic_linear_modules(model).items():
        q = torch._make_per_tensor_quantized_tensor(state[f"{name}.weight_int8"],
                                                    float(state[f"{name}.weight_scale"]),
                                                    int(state[f"{name}.weight_zero_point"]))
        layer.set_weight_bias(q, state.get(f"{name}.bias"))
    return model
