"""Sparse weights on disk: a bitmask of the non-zeros plus the non-zero values, inside an ordinary safetensors file.

A pruned model saved densely is exactly as big as before (a mask is not a smaller model). Here a tensor whose bitmask
encoding is smaller than its dense bytes is stored as ``NAME.__nz_mask`` (packed bits, uint8) and
``NAME.__nz_values`` (the non-zeros, original dtype): at 90% sparsity fp32 weights take 1/8 + 0.1 x 4 = 0.525 bytes
per weight instead of 4. Shapes and tied-weight aliases go in the safetensors metadata. Decoding is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "sizewise.sparse-bitmask/1"
_MASK, _VALUES = ".__nz_mask", ".__nz_values"


def _encoded_bytes(t: torch.Tensor, nonzero: int) -> int:
    return (t.numel() + 7) // 8 + nonzero * t.element_size()


def pays_to_store_sparse(state: dict[str, torch.Tensor]) -> bool:
    """More than 1 in 32 of the matrices' weights are zero: bitmask + values is then smaller than dense fp32."""
    total = zeros = 0
    for t in state.values():
        if t.dim() >= 2 and t.is_floating_point():
            total += t.numel()
            zeros += int((t == 0).sum())
    return total > 0 and zeros / total > 1 / 32


def save_sparse(state: dict[str, torch.Tensor], path: str | Path) -> dict[str, int]:
    """Write ``state``; returns how many tensors were stored sparse vs dense."""
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple], str] = {}
    counts = {"sparse": 0, "dense": 0}
    for name, t in state.items():
        key = (t.data_ptr(), t.numel(), tuple(t.shape))
        if key in seen and t.numel():
            aliases[name] = seen[key]  # a tied weight: stored once
            continue
        seen[key] = name
        t = t.detach().cpu().contiguous()
        nonzero = int(torch.count_nonzero(t)) if t.is_floating_point() else t.numel()
        if t.is_floating_point() and t.dim() >= 2 and _encoded_bytes(t, nonzero) < t.numel() * t.element_size():
            mask = (t != 0).flatten().numpy()
            tensors[name + _MASK] = torch.from_numpy(np.packbits(mask))
            tensors[name + _VALUES] = t.flatten()[torch.from_numpy(mask)].clone()
            shapes[name] = list(t.shape)
            counts["sparse"] += 1
        else:
            tensors[name] = t
            counts["dense"] += 1
    metadata = {"format": FORMAT, "shapes": json.dumps(shapes), "aliases": json.dumps(aliases)}
    save_file(tensors, str(path), metadata=metadata)
    return counts


def is_sparse_file(path: str | Path) -> bool:
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("format") == FORMAT


def load_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        raw = {k: f.get_tensor(k) for k in f.keys()}
    shapes = json.loads(meta.get("shapes", "{}"))
    state = {k: v for k, v in raw.items() if not k.endswith((_MASK, _VALUES))}
    for name, shape in shapes.items():
        values = raw[name + _VALUES]
        numel = int(np.prod(shape))
        mask = torch.from_numpy(np.unpackbits(raw[name + _MASK].numpy())[:numel].astype(bool))
        dense = torch.zeros(numel, dtype=values.dtype)
        dense[mask] = values
        state[name] = dense.reshape(shape)
    for alias, target in json.loads(meta.get("aliases", "{}")).items():
        state[alias] = state[target]
    return state
