"""Magnitude masks with exact sparsity, and keeping pruned weights at zero while fine-tuning.

We compute masks ourselves instead of using ``torch.nn.utils.prune`` because its reparametrisation
(``weight_orig`` x ``weight_mask`` behind a forward pre-hook) must be removed again before saving, slows every forward,
and its amount for repeated pruning is relative to what remains; here the mask is applied to the weight in place
after each optimizer step, so the module stays an ordinary module with no extra names (masks are "folded" by
construction) and sparsity is exact: ties at the threshold are broken by index, not by ``>=``.
"""

from __future__ import annotations

import torch
from torch import nn

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_weights(module: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of Linear and Conv layers (biases, norms and embeddings are left dense, as in Han et al.)."""
    found, seen = {}, set()
    for name, sub in module.named_modules():
        if isinstance(sub, PRUNABLE) and id(sub.weight) not in seen:
            seen.add(id(sub.weight))
            found[f"{name}.weight" if name else "weight"] = sub.weight
    return found


def _keep_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Zero exactly ``n_prune`` of the lowest scores."""
    flat = scores.flatten()
    mask = torch.ones_like(flat, dtype=torch.bool)
    if n_prune > 0:
        mask[torch.argsort(flat, stable=True)[:n_prune]] = False
    return mask.view_as(scores)


def magnitude_masks(weights: dict[str, nn.Parameter], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Masks removing the smallest |w|: ``global`` ranks all layers together, ``layer`` prunes each layer alike.

    Already-zero weights have the lowest magnitude, so masks only grow as sparsity rises (gradual pruning relies on it).
    """
    with torch.no_grad():
        if scope == "layer":
            return {n: _keep_mask(w.abs(), int(round(sparsity * w.numel()))) for n, w in weights.items()}
        scores = torch.cat([w.abs().flatten() for w in weights.values()])
        keep = _keep_mask(scores, int(round(sparsity * scores.numel())))
        masks, offset = {}, 0
        for name, w in weights.items():
            masks[name] = keep[offset:offset + w.numel()].view_as(w)
            offset += w.numel()
        return masks


class MaskKeeper:
    """Applies masks to their weights; call it after each optimizer step so fine-tuning cannot revive them."""

    def __init__(self, weights: dict[str, nn.Parameter], masks: dict[str, torch.Tensor]):
        self.weights, self.masks = weights, masks
        self.apply()

    def apply(self, *_: object) -> None:
        with torch.no_grad():
            for name, mask in self.masks.items():
                self.weights[name].mul_(mask)

    def sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1 - sum(int(m.sum()) for m in self.masks.values()) / max(1, total)


def weight_sparsity(module: nn.Module) -> float:
    weights = prunable_weights(module)
    total = sum(w.numel() for w in weights.values())
    with torch.no_grad():
        zeros = sum(int((w == 0).sum()) for w in weights.values())
    return zeros / max(1, total)
