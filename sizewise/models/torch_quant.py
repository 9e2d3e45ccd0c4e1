"""PyTorch int8 Linear layers through torchao, and storing them in safetensors exactly.

Quantizing: torchao's ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` turns each ``nn.Linear`` weight into
an ``Int8Tensor`` (int8 values, one float32 scale per output row, symmetric so the zero point is 0); activations are
quantized per token on the fly and the product runs in ``torch._int_mm``. It replaces ``torch.ao`` quantized tensors
(``quantize_dynamic``, ``_make_per_tensor_quantized_tensor``), which torch deprecates. The module stays an
``nn.Linear``: "quantized" means its weight is an ``Int8Tensor``.

Storing: safetensors holds plain tensors only, and re-quantizing dequantized weights does not give the same integers
back (the scale is recomputed from a max that moved). So each int8 layer is stored as ``<layer>.weight_int8`` (int8,
out x in) and ``<layer>.weight_scale`` (float32, out x 1), and on load the ``Int8Tensor`` is rebuilt from exactly
those. torchao's own safetensors support (``torchao.prototype.safetensors``) would put the layout in JSON file
metadata that our sparse format does not carry, and it is a prototype; plain keys are readable by anything.

Artifacts written before torchao (torch.ao: ``.weight_int8``, a float64 per-tensor ``.weight_scale`` and a
``.weight_zero_point``) still load: the per-tensor scale is broadcast to every row (as float32: the dequantized
weights move by at most one float32 rounding of the scale, ~6e-8 relative) and the int8 values are kept as they are.
torch.ao's default dynamic qconfig is symmetric (zero point 0); a layer with another zero point cannot be expressed as
a symmetric Int8Tensor, so it is dequantized to float and quantized again by torchao (its integers then change).

torchao is imported inside the functions: ``import sizewise`` stays light, and a model that was never quantized on
torch never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from types import ModuleType

import torch
from torch import nn

from sizewise.core.errors import ModelReferenceError

QUANTIZED_LINEAR = "torchao int8 dynamic-activation Linear (per-row symmetric weights)"
_INT8, _SCALE, _ZERO_POINT = ".weight_int8", ".weight_scale", ".weight_zero_point"  # _ZERO_POINT: old format only


def _key(layer: str, suffix: str) -> str:
    """State-dict key of ``suffix`` (e.g. ``.weight``) on ``layer``; the root module has the empty name."""
    return f"{layer}{suffix}" if layer else suffix.removeprefix(".")


@contextlib.contextmanager
def _quiet(*names: str):
    """torchao's import logs that its CUDA-only libraries did not load, and torch that torchao registers an Enum the
    old way: harmless on CPU, alarming in a terminal."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _torchao() -> ModuleType:
    """``torchao.quantization``, or an error naming the extra that installs it."""
    if "torchao.quantization" in sys.modules:
        return sys.modules["torchao.quantization"]
    from sizewise.core.optional import require

    with _quiet("torchao", "torch.utils._pytree"):
        return require("torchao.quantization", "torchao", "int8 quantization on the torch runtime")


def int8_config():
    """The one torchao config sizewise uses. ``set_inductor_config=False``: torchao would otherwise change global
    torch.compile settings as a side effect of quantizing, and we run eager."""
    return _torchao().Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)


def is_int8_weight(weight) -> bool:
    """True for a torchao ``Int8Tensor``. Without torchao imported no tensor can be one, so this never imports it."""
    ao = sys.modules.get("torchao.quantization")
    return ao is not None and isinstance(weight, ao.Int8Tensor)


def dynamic_linear_modules(model: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers whose weight is int8 (torchao ``Int8Tensor``), by module name."""
    if "torchao.quantization" not in sys.modules:
        return {}
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and is_int8_weight(getattr(m, "weight", None))}


def weight_values(weight: torch.Tensor) -> torch.Tensor:
    """A weight as counted (non-zeros, non-finite values): an int8 weight's integers, any other tensor itself.
    torchao's Int8Tensor reports the float dtype it stands in for and implements few ops (not ``count_nonzero``)."""
    return weight.qdata if is_int8_weight(weight) else weight


def stored_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors that hold ``tensor`` in memory: itself, or for a torchao tensor subclass its parts (an
    Int8Tensor: int8 values, float32 row scales, int8 zero points), so byte sums see int8 and not the float dtype
    the subclass reports."""
    if type(tensor) in (torch.Tensor, nn.Parameter) or not hasattr(tensor, "__tensor_flatten__"):
        return [tensor]
    names, _ = tensor.__tensor_flatten__()
    return [part for n in names if getattr(tensor, n) is not None for part in stored_tensors(getattr(tensor, n))]


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Every ``nn.Linear`` to int8 weights + per-token int8 activations, in place (as torchao's ``quantize_``);
    returns ``model``. torchao skips ``NonDynamicallyQuantizableLinear`` (attention out-projections), as torch.ao
    did."""
    ao = _torchao()
    ao.quantize_(model, int8_config())
    for layer in dynamic_linear_modules(model).values():
        # quantize_ sets a per-instance extra_repr (a bound functools.partial) that pickle cannot serialize, and the
        # memory measurement sends the module to a child process
        layer.__dict__.pop("extra_repr", None)
    return model


@functools.cache
def _template():
    """A weight quantized by ``quantize_`` itself: rebuilt weights copy its activation settings, so they are what
    ``quantize_`` would have made."""
    layer = nn.utils.skip_init(nn.Linear, 8, 2, bias=False)  # skip_init: no draw from the global RNG
    nn.init.zeros_(layer.weight)
    return quantize_dynamic_int8(layer).weight


def _int8_weight(qdata: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype):
    """The ``Int8Tensor`` for these int8 values (out x in) and per-row scales."""
    template = _template()
    scale = scale.to(torch.float32).reshape(qdata.shape[0], 1).contiguous()
    block_size = [1, qdata.shape[1]]  # one block a row
    return _torchao().Int8Tensor(qdata.to(torch.int8).contiguous(), scale, block_size, dtype,
                                 zero_point=torch.zeros_like(scale, dtype=torch.int8),
                                 act_quant_kwargs=template.act_quant_kwargs, reduce_range=template.reduce_range)


def quantized_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain-tensor state dict: float tensors as they are, each int8 Linear weight as int8 values + per-row scales."""
    layers = dynamic_linear_modules(model)
    weights = {_key(n, ".weight") for n in layers}
    state = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor) and k not in weights}
    for name, layer in layers.items():
        w = layer.weight
        if w.zero_point is not None and bool(w.zero_point.any()):
            raise ValueError(f"layer '{name}' has an asymmetric int8 weight (non-zero zero point), which this "
                             f"format does not store; sizewise quantizes weights symmetrically")
        state[_key(name, _INT8)] = w.qdata.detach()
        state[_key(name, _SCALE)] = w.scale.detach().reshape(w.qdata.shape[0], 1)
    return state


def _old_format_layer(name: str, layer: nn.Linear, qdata: torch.Tensor, scale: torch.Tensor,
                      zero_point: torch.Tensor | None):
    """The ``Int8Tensor`` for one layer saved by the torch.ao format (per-tensor scale + zero point)."""
    if scale.numel() != 1 or (zero_point is not None and zero_point.numel() != 1):
        raise ModelReferenceError(f"layer '{name}' has {scale.numel()} scales in the old torch.ao format, "
                                  f"which stored one per tensor", hint="re-quantize the float model")
    zp = int(zero_point) if zero_point is not None else 0
    if zp == 0:
        return _int8_weight(qdata, torch.full((qdata.shape[0], 1), float(scale), dtype=torch.float32),
                            layer.weight.dtype)
    # not expressible symmetrically: dequantize exactly (float64), quantize again per row
    float_weight = ((qdata.to(torch.float64) - zp) * float(scale)).to(layer.weight.dtype)
    scratch = nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features, bias=False)
    scratch.weight = nn.Parameter(float_weight, requires_grad=False)
    return quantize_dynamic_int8(scratch).weight


def load_quantized_state(float_model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load ``state`` (from :func:`quantized_state`, or the older torch.ao format) into ``float_model``: float
    tensors as they are, every Linear saved as int8 rebuilt from exactly its saved values and scales. In place."""
    names = {k.removesuffix(_INT8) for k in state if k.endswith(_INT8)} | ({""} if _key("", _INT8) in state else set())
    layer_keys = {_key(n, s) for n in names for s in (_INT8, _SCALE, _ZERO_POINT)}
    plain = {k: v for k, v in state.items() if k not in layer_keys}
    missing, unexpected = float_model.load_state_dict(plain, strict=False)
    missing = set(missing) - {_key(n, ".weight") for n in names}
    if missing or unexpected:
        raise ModelReferenceError(f"the int8 weights do not fit the model: missing {sorted(missing)[:5]}, "
                                  f"unexpected {sorted(unexpected)[:5]}",
                                  hint="the file may belong to another architecture")
    for name in sorted(names):
        layer = float_model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise ModelReferenceError(f"'{name}' holds int8 weights but is a {type(layer).__name__}, not a Linear")
        qdata, scale = state[_key(name, _INT8)], state[_key(name, _SCALE)]
        if tuple(qdata.shape) != tuple(layer.weight.shape):
            raise ModelReferenceError(f"the int8 weight of '{name}' is {tuple(qdata.shape)}, the layer "
                                      f"{tuple(layer.weight.shape)}",
                                      hint="the file may belong to another architecture")
        if _key(name, _ZERO_POINT) in state:
            weight = _old_format_layer(name, layer, qdata, scale, state[_key(name, _ZERO_POINT)])
        else:
            weight = _int8_weight(qdata, scale, layer.weight.dtype)
        layer.weight = nn.Parameter(weight, requires_grad=False)
    return float_model
