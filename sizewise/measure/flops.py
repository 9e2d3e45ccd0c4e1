"""FLOPs of one forward pass, counted at the aten-operator level.

We reuse PyTorch's own FLOP formulas (``torch.utils.flop_counter.flop_registry``: mm, addmm, bmm, convolution, the
GPU SDPA kernels, ...) but drive them from our own dispatch mode, because ``FlopCounterMode`` alone

* misses the CPU attention kernel ``_scaled_dot_product_flash_attention_for_cpu`` (counted as zero, so a BERT layer's
  QK^T and AV matmuls vanish), which we register here with PyTorch's own ``sdpa_flop_count``;
* cannot say what it did not count: we list every arithmetic op without a formula, with an estimate of 1 FLOP per
  output element, and report coverage = counted / (counted + that estimate);
* cannot tell weights from activations: an argument that shares storage with a parameter is a weight, so
  "effective" FLOPs scale each op by its weight's density (the work a sparse kernel would do).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_flop_count, shape_wrapper

from sizewise.measure.card import FlopStats, OpFlops

aten = torch.ops.aten


@shape_wrapper
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


FLOP_FORMULAS = {**flop_registry, aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
                 aten._int_mm: flop_registry[aten.mm]}  # int8 x int8 -> int32 matmul (torchao int8 Linear)

# Ops that move, view, create, index or compare data: no arithmetic, so neither counted nor "uncounted".
_NO_ARITHMETIC = {
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "slice", "select", "squeeze",
    "unsqueeze", "clone", "contiguous", "_to_copy", "copy_", "copy", "detach", "alias", "split", "split_with_sizes",
    "unbind", "cat", "stack", "embedding", "gather", "index_select", "index", "ones", "zeros", "empty", "full",
    "arange", "randint", "rand", "randn", "scalar_tensor", "lift_fresh", "lift_fresh_copy", "_local_scalar_dense",
    "all", "any", "eq", "ne", "lt", "le", "gt", "ge", "masked_fill", "where", "constant_pad_nd", "flatten",
    "new_zeros", "new_ones", "new_empty", "new_full", "empty_like", "zeros_like", "ones_like", "full_like",
    "fill_", "zero_", "fill", "_reshape_alias", "as_strided", "unfold", "bitwise_not", "bitwise_and",
    "logical_not", "logical_and", "isnan", "isinf", "max_pool2d_with_indices_backward", "sym_size",
    "_unsafe_index", "diagonal", "narrow", "chunk", "repeat", "tril", "triu", "masked_fill_", "sort", "topk",
    "argmax", "argmin", "max", "min", "to", "type_as", "item", "_assert_async", "cumsum",
}


class _FlopCounter(TorchDispatchMode):
    def __init__(self, weight_density: dict[tuple[int, int], float]):
        super().__init__()
        self.weight_density = weight_density  # (data_ptr, numel) -> fraction of non-zero values
        self.counted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.uncounted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.effective = 0
        self.by_layer: dict[str, int] = defaultdict(int)
        self.layer_stack: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in FLOP_FORMULAS and packet.__name__ not in _NO_ARITHMETIC:
            with self:  # composite ops: count the pieces they decompose into (as FlopCounterMode does)
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        name = packet.__name__
        if packet in FLOP_FORMULAS:
            flops = int(FLOP_FORMULAS[packet](*args, **kwargs, out_val=out))
            entry = self.counted[name]
            entry[0] += 1
            entry[1] += flops
            self.effective += int(round(flops * self._density(args)))
            if self.layer_stack:
                self.by_layer[self.layer_stack[-1]] += flops
        elif name not in _NO_ARITHMETIC:
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
            entry = self.uncounted[name]
            entry[0] += 1
            entry[1] += sum(t.numel() for t in outputs)
        return out

    def _density(self, args) -> float:
        # Only matrices and kernels scale the work: addmm's 1-D bias argument is a parameter too (and may be all zeros).
        densities = [self.weight_density[ptr] for t in tree_flatten(args)[0]
                     if isinstance(t, torch.Tensor) and t.dim() >= 2 and (ptr := _storage_ptr(t)) in self.weight_density]
        return min(densities) if densities else 1.0


def _storage_ptr(t: torch.Tensor) -> tuple[int, int] | None:
    """Identify a weight by (address of its first element, size): a transposed view keeps both, and unlike the
    storage pointer it stays unique when a loader packs many weights into one shared (mmapped) storage."""
    try:
        return (t.data_ptr(), t.numel())
    except (RuntimeError, NotImplementedError):
        return None


def _track_layers(module: nn.Module, counter: _FlopCounter) -> list:
    """Hooks that attribute FLOPs to the innermost module owning parameters."""
    handles = []
    for name, sub in module.named_modules():
        if not any(True for _ in sub.parameters(recurse=False)):
            continue
        handles.append(sub.register_forward_pre_hook(lambda m, a, n=name: counter.layer_stack.append(n or "(root)")))
        handles.append(sub.register_forward_hook(lambda m, a, o: _pop(counter.layer_stack)))
    return handles


def _pop(stack: list[str]) -> None:
    stack.pop()  # a forward hook that returned the popped name would replace the module's output


def count_flops(module: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[FlopStats, dict[str, int]]:
    """Run one forward on ``inputs`` and count. Returns the stats and FLOPs per layer name."""
    from sizewise.models.torch_quant import weight_values

    with torch.no_grad():
        density = {}
        for p in module.parameters():
            p = weight_values(p)  # an int8 weight: its integers, the tensor its matmul reads
            ptr = _storage_ptr(p)
            if ptr is not None and p.numel():
                density[ptr] = float(torch.count_nonzero(p)) / p.numel()
    counter = _FlopCounter(density)
    handles = _track_layers(module, counter)
    try:
        with torch.no_grad(), counter:
            module(**inputs)
    finally:
        for h in handles:
            h.remove()
    total = sum(v[1] for v in counter.counted.values())
    uncounted_est = sum(v[1] for v in counter.uncounted.values())
    coverage = total / (total + uncounted_est) if (total + uncounted_est) else 1.0
    stats = FlopStats(
        total=total,
        effective=counter.effective,
        coverage=coverage,
        input_shape={k: list(v.shape) for k, v in inputs.items()},
        by_op=sorted((OpFlops(k, v[0], v[1]) for k, v in counter.counted.items()), key=lambda o: -o.flops),
        uncounted=sorted((OpFlops(k, v[0], v[1]) for k, v in counter.uncounted.items()), key=lambda o: -o.flops),
    )
    return stats, dict(counter.by_layer)
