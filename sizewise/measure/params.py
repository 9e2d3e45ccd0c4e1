"""Parameter counts: total (tied weights once), trainable, non-zero, buffers apart, and per layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sizewise.measure.card import LayerParams, ParamStats
from sizewise.models.torch_quant import weight_values


def count_params(module: nn.Module) -> ParamStats:
    from sizewise.models.onnx_module import OnnxModule

    if isinstance(module, OnnxModule):
        return _count_onnx(module)
    unique: dict[int, tuple[str, nn.Parameter]] = {}
    tied = 0
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in unique:
            tied += p.numel()  # e.g. BERT/GPT input embedding shared with the output projection
        else:
            unique[id(p)] = (name, p)
    params = [p for _, p in unique.values()]
    values = [weight_values(p) for p in params]  # an int8 (torchao) weight is counted by its integers
    with torch.no_grad():
        nonzero = sum(int(torch.count_nonzero(v)) for v in values)
        nonfinite = sum(int((~torch.isfinite(v)).sum()) for v in values if v.is_floating_point())
    buffers = sum(b.numel() for b in {id(b): b for b in module.buffers()}.values())
    return ParamStats(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        nonzero=nonzero,
        buffers=buffers,
        tied=tied,
        nonfinite=nonfinite,
        per_layer=_per_layer(module),
    )


def _per_layer(module: nn.Module) -> list[LayerParams]:
    rows, seen = [], set()
    for name, sub in module.named_modules():
        own = [p for p in sub.parameters(recurse=False) if id(p) not in seen]
        if not own:
            continue
        seen.update(id(p) for p in own)
        with torch.no_grad():
            rows.append(LayerParams(name=name or "(root)", kind=type(sub).__name__,
                                    params=sum(p.numel() for p in own),
                                    nonzero=sum(int(torch.count_nonzero(weight_values(p))) for p in own)))
    return rows


def _packed_weights(path: str) -> dict[str, int]:
    """Initializers holding packed sub-byte weights (MatMulNBits, GatherBlockQuantized): name -> weights per byte."""
    import onnx

    packed = {}
    for node in onnx.load(path, load_external_data=False).graph.node:
        if node.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
            packed[node.input[1 if node.op_type == "MatMulNBits" else 0]] = 8 // bits
    return packed


def _count_onnx(module) -> ParamStats:
    from sizewise.models.onnx_module import onnx_initializers

    arrays = onnx_initializers(module.path)
    # int64/int32 initializers in an exported graph are shapes and indices, not learned weights; int8/uint8 ones are
    # quantized weights (and zero points), and packed 4-bit ones hold two weights per byte.
    weights = {n: a for n, a in arrays.items()
               if np.issubdtype(a.dtype, np.floating) or a.dtype in (np.int8, np.uint8)}
    per_byte = _packed_weights(module.path)
    total = sum(a.size * per_byte.get(n, 1) for n, a in weights.items())
    nonzero = sum(int(np.count_nonzero(a)) * per_byte.get(n, 1) for n, a in weights.items())
    nonfinite = sum(int((~np.isfinite(a)).sum()) for a in weights.values() if np.issubdtype(a.dtype, np.floating))
    rows = [LayerParams(name=n, kind=f"initializer:{a.dtype}", params=int(a.size), nonzero=int(np.count_nonzero(a)))
            for n, a in weights.items()]
    return ParamStats(total=total, trainable=0, nonzero=nonzero, buffers=0, tied=0, nonfinite=nonfinite,
                      per_layer=rows)
