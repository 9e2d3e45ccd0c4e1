"""Fit a freshly built architecture to the tensor shapes of a structurally pruned state dict.

A channel-pruned ``zoo:resnet20`` is still a ResNet-20, with fewer channels: rebuilding it from its reference and
resizing each layer to the saved shapes keeps the artifact a plain safetensors file (no pickled module, which would
execute code when loaded). Only layer types whose size is fully described by their tensors are resized: the usual
torch layers, and modules that say so with ``sized_by_its_tensors = True`` (the option-A shortcut's layout buffer).
"""

from __future__ import annotations

import torch
from torch import nn

from sizewise.core.errors import ModelReferenceError


def _resize(module: nn.Module, name: str, shape: tuple[int, ...], is_buffer: bool) -> None:
    current = getattr(module, name)
    empty = torch.empty(shape, dtype=current.dtype)
    if is_buffer:
        module.register_buffer(name, empty)
    else:
        setattr(module, name, nn.Parameter(empty, requires_grad=current.requires_grad))


def fit_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Resize ``model``'s layers where ``state`` has other shapes; returns how many layers changed."""
    changed = 0
    for prefix, sub in model.named_modules():
        own = dict([*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)])
        diffs = {}
        for n, t in own.items():
            saved = state.get(f"{prefix}.{n}" if prefix else n)
            if t is not None and saved is not None and tuple(saved.shape) != tuple(t.shape):
                diffs[n] = tuple(saved.shape)
        if not diffs:
            continue
        if not isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d,
                                nn.LayerNorm)) and not getattr(sub, "sized_by_its_tensors", False):
            raise ModelReferenceError(f"layer '{prefix}' ({type(sub).__name__}) has other shapes in the saved "
                                      f"weights and sizewise does not know how to resize it")
        buffers = dict(sub.named_buffers(recurse=False))
        for n, shape in diffs.items():
            _resize(sub, n, shape, n in buffers)
        if isinstance(sub, nn.Linear):
            sub.out_features, sub.in_features = sub.weight.shape
        elif isinstance(sub, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            sub.out_channels, sub.in_channels = sub.weight.shape[0], sub.weight.shape[1] * sub.groups
        elif isinstance(sub, (nn.BatchNorm1d, nn.BatchNorm2d)):
            sub.num_features = sub.running_mean.shape[0]
        elif isinstance(sub, nn.LayerNorm):
            sub.normalized_shape = tuple(sub.weight.shape)
        changed += 1
    return changed
