"""Low-rank layers: a dense ``W`` (out x in) stored as two thinner layers, ``in -> r -> out``.

These are ordinary compositions of ``nn.Linear`` / ``nn.Conv2d``, so FLOP counting, ONNX export, dynamic int8
quantization and safetensors all see plain layers. The factors themselves are computed in
``sizewise.compress.factorize``; this module only knows the structure, so a saved artifact can be rebuilt from its
manifest (``{"encoder.layer.0.output.dense": 48, ...}``) before its weights are loaded.
"""

from __future__ import annotations

from torch import nn

from sizewise.core.errors import ModelReferenceError


class LowRankLinear(nn.Module):
    """``Linear(in, out)`` as ``Linear(in, r, bias=False)`` then ``Linear(r, out)`` (keeping the original bias)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.rank = rank  # kept as an attribute: it survives quantization of the two factors
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    # read from the factors, so they follow a later resize (reshape.fit_shapes) or quantization of either half;
    # code that reads a Linear's sizes (e.g. attention head counts) keeps working
    @property
    def in_features(self) -> int:
        return self.down.in_features

    @property
    def out_features(self) -> int:
        return self.up.out_features

    def forward(self, x):
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class LowRankConv2d(nn.Module):
    """``Conv2d(in, out, k)`` as ``Conv2d(in, r, k)`` (same stride/padding/dilation, no bias) then a 1x1
    ``Conv2d(r, out)`` with the original bias. Grouped convolutions are not factorized."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1, padding=0, dilation=1,
                 bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        self.rank = rank
        self.down = nn.Conv2d(in_channels, rank, kernel_size, stride=stride, padding=padding, dilation=dilation,
                              bias=False, padding_mode=padding_mode, device=device, dtype=dtype)
        self.up = nn.Conv2d(rank, out_channels, 1, bias=bias, device=device, dtype=dtype)

    @property
    def in_channels(self) -> int:
        return self.down.in_channels

    @property
    def out_channels(self) -> int:
        return self.up.out_channels

    def forward(self, x):
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.down.kernel_size}, rank={self.rank}")


LOW_RANK = (LowRankLinear, LowRankConv2d)


def lowrank_ranks(module: nn.Module) -> dict[str, int]:
    """Qualified name -> rank of every low-rank layer in ``module`` (empty for a model without any)."""
    return {name: int(sub.rank) for name, sub in module.named_modules() if isinstance(sub, LOW_RANK)}


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def lowrank_like(layer: nn.Module, rank: int) -> nn.Module:
    """An (uninitialized-weights) low-rank layer with ``layer``'s sizes, options, dtype and device."""
    weight = layer.weight
    kw = {"device": weight.device, "dtype": weight.dtype}
    if isinstance(layer, nn.Linear):
        return LowRankLinear(layer.in_features, layer.out_features, rank, bias=layer.bias is not None, **kw)
    if isinstance(layer, nn.Conv2d) and layer.groups == 1:
        return LowRankConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, rank, stride=layer.stride,
                             padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None,
                             padding_mode=layer.padding_mode, **kw)
    raise ModelReferenceError(f"cannot make a low-rank version of {type(layer).__name__} "
                              f"(only Linear and Conv2d with groups=1)")


def apply_lowrank_structure(module: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Replace the named Linear/Conv2d layers of ``module`` by low-rank layers of the given ranks (weights to be
    loaded afterwards); layers that already are low-rank with that rank are left alone. Returns ``module``."""
    layers = dict(module.named_modules())
    for name, rank in ranks.items():
        layer = layers.get(name)
        if layer is None:
            raise ModelReferenceError(f"the saved model has a low-rank layer '{name}' that its architecture lacks",
                                      hint="the artifact may belong to another architecture")
        if isinstance(layer, LOW_RANK) and layer.rank == rank:
            continue
        if not isinstance(rank, int) or rank < 1:
            raise ModelReferenceError(f"invalid rank {rank!r} for low-rank layer '{name}' in the saved model")
        replace_module(module, name, lowrank_like(layer, rank))
    return module
