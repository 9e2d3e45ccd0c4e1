"""Low-rank factorization: each eligible Linear/Conv2d weight ``W`` (out x in, a conv reshaped to out x in*kh*kw)
is replaced by its truncated SVD ``U_r S_r V_r^T``, stored as two thinner layers ``in -> r -> out``.

``sqrt(S_r)`` goes into both factors so they have comparable scales (which keeps later fine-tuning and int8
quantization of either factor well conditioned). The rank of each layer comes from one of three rules: a fixed rank,
the singular-value energy to keep (smallest ``r`` with ``sum(S[:r]**2) >= energy * sum(S**2)``), or a parameter
budget for all eligible layers together, met by the largest *global* energy threshold whose ranks fit it (one
threshold for every layer spends the budget where the spectrum is spread, not evenly). A layer is only replaced when
``r * (in + out) < in * out``: otherwise the two factors would be larger than the dense weight, so it stays dense.

Written by hand because it is a few lines of ``torch.linalg.svd``; the libraries that do it (e.g. tensorly) would be a
heavy dependency for that.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import nn

from sizewise.compress.registry import SHARED, SPARSE, Method, StepContext, register
from sizewise.core.errors import ConfigError
from sizewise.models.lowrank import LOW_RANK, lowrank_like, replace_module


@dataclass(frozen=True)
class Factorize:
    """Replace Linear/Conv2d weights by truncated-SVD factors; exactly one of ``rank``, ``energy``, ``target_params``."""

    rank: int | None = None  # the same rank for every layer (capped at min(out, in))
    energy: float | None = None  # fraction of singular-value energy (sum of S^2) each layer keeps, in (0, 1]
    target_params: float | None = None  # fraction of the eligible layers' parameters to keep overall, in (0, 1)
    layers: str | None = None  # fnmatch pattern of layer names to consider, e.g. '*intermediate.dense'
    include_conv: bool = True

    def __post_init__(self) -> None:
        given = [n for n in ("rank", "energy", "target_params") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(f"give exactly one of rank, energy or target_params, got "
                              f"{', '.join(given) if given else 'none'}",
                              hint="e.g. --energy 0.9 keeps 90% of each layer's singular-value energy")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise ConfigError(f"rank must be a positive integer, got {self.rank!r}")
        if self.energy is not None and not (isinstance(self.energy, (int, float)) and 0 < self.energy <= 1):
            raise ConfigError(f"energy must be in (0, 1], got {self.energy!r}",
                              hint="it is the fraction of singular-value energy kept: 0.9 keeps 90%")
        if self.target_params is not None and not (isinstance(self.target_params, (int, float))
                                                   and 0 < self.target_params < 1):
            raise ConfigError(f"target_params must be in (0, 1), got {self.target_params!r}",
                              hint="it is the fraction of the factorized layers' parameters kept: 0.5 keeps half")
        if self.layers is not None and (not isinstance(self.layers, str) or not self.layers):
            raise ConfigError(f"layers must be a non-empty name pattern such as '*output.dense', got {self.layers!r}")


@dataclass
class _Layer:
    name: str
    module: nn.Module
    matrix: torch.Tensor  # W as out x (in * kh * kw), float32
    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor
    cum: torch.Tensor  # cumulative energy fraction, float64, cum[r - 1] = kept by rank r

    @property
    def bias(self) -> int:
        return 0 if self.module.bias is None else self.module.bias.numel()

    @property
    def dense(self) -> int:
        return self.matrix.numel() + self.bias

    def factored(self, r: int) -> int:
        out, inner = self.matrix.shape
        return r * (out + inner) + self.bias

    def saves(self, r: int) -> bool:
        out, inner = self.matrix.shape
        return r * (out + inner) < out * inner

    def cost(self, r: int) -> int:
        return self.factored(r) if self.saves(r) else self.dense

    def rank_for_energy(self, energy: float) -> int:
        # a tiny tolerance so energy=1.0 (and values equal to a cumulative sum) are not lost to rounding
        return min(len(self.cum), int((self.cum < energy - 1e-9).sum()) + 1)


def _tied(model: nn.Module) -> set[int]:
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return {k for k, n in counts.items() if n > 1}


def eligible_layers(model: nn.Module, config: Factorize) -> tuple[list[tuple[str, nn.Module]], dict[str, str]]:
    """The layers to factorize, and those skipped with why (tied to another weight)."""
    tied = _tied(model)
    inside = set()  # the two halves of an existing low-rank layer are not factorized again
    chosen, skipped = [], {}
    # exact types: subclasses such as MultiheadAttention's out_proj are read by their parent as plain weights
    kinds = (nn.Linear, nn.Conv2d) if config.include_conv else (nn.Linear,)
    for name, sub in model.named_modules():
        if isinstance(sub, LOW_RANK):
            inside.update(id(m) for m in sub.modules())
        if id(sub) in inside or not name:
            continue
        if type(sub) not in kinds or (isinstance(sub, nn.Conv2d) and sub.groups != 1):
            continue
        if config.layers is not None and not fnmatch.fnmatchcase(name, config.layers):
            continue
        if id(sub.weight) in tied:
            skipped[name] = "weight tied to another layer"
            continue
        chosen.append((name, sub))
    return chosen, skipped


def _decompose(name: str, module: nn.Module) -> _Layer:
    w = module.weight.detach()
    matrix = w.reshape(w.shape[0], -1).float()
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    energy = (s.double() ** 2).cumsum(0)
    cum = energy / energy[-1] if float(energy[-1]) > 0 else torch.ones_like(energy)
    return _Layer(name, module, matrix, u, s, vh, cum)


def _global_threshold(layers: list[_Layer], budget: float) -> float:
    """The largest energy threshold whose ranks fit ``budget`` parameters (cost grows with the threshold, so the
    candidates, every cumulative energy value of every layer, can be searched by bisection)."""
    candidates = torch.unique(torch.cat([layer.cum for layer in layers])).tolist()

    def cost(threshold: float) -> int:
        return sum(layer.cost(layer.rank_for_energy(threshold)) for layer in layers)

    if cost(candidates[0]) > budget:
        smallest = cost(candidates[0]) / sum(layer.dense for layer in layers)
        raise ConfigError(f"cannot keep only {budget / sum(layer.dense for layer in layers):.3g} of the parameters: "
                          f"rank 1 everywhere already keeps {smallest:.3g}",
                          hint=f"ask for target_params >= {math.ceil(smallest * 1000) / 1000}")
    lo, hi = 0, len(candidates) - 1  # invariant: candidates[lo] fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(candidates[mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return candidates[lo]


def _ranks(layers: list[_Layer], config: Factorize) -> dict[str, int]:
    if config.rank is not None:
        return {layer.name: min(config.rank, len(layer.s)) for layer in layers}
    if config.energy is not None:
        return {layer.name: layer.rank_for_energy(config.energy) for layer in layers}
    budget = config.target_params * sum(layer.dense for layer in layers)
    threshold = _global_threshold(layers, budget)
    return {layer.name: layer.rank_for_energy(threshold) for layer in layers}


def _factor(layer: _Layer, r: int) -> nn.Module:
    root = layer.s[:r].sqrt()
    first = root[:, None] * layer.vh[:r]  # r x (in * kh * kw)
    second = layer.u[:, :r] * root[None, :]  # out x r
    new = lowrank_like(layer.module, r)
    weight = layer.module.weight
    new.down.weight.data.copy_(first.reshape(new.down.weight.shape).to(weight.dtype))
    new.up.weight.data.copy_(second.reshape(new.up.weight.shape).to(weight.dtype))
    if layer.module.bias is not None:
        new.up.bias.data.copy_(layer.module.bias.detach())
    new.train(layer.module.training)
    return new


def factorize(loaded, config: Factorize, ctx: StepContext) -> dict:
    dataset, finetune = ctx.data, ctx.train
    model = loaded.module
    if finetune and dataset is None:
        raise ConfigError("fine-tuning after factorization needs training data", hint="pass --data")
    chosen, skipped = eligible_layers(model, config)
    if not chosen:
        names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][:6]
        raise ConfigError(f"no layer of '{loaded.reference}' can be factorized"
                          + (f" with the pattern '{config.layers}'" if config.layers else ""),
                          hint=f"layer names look like: {', '.join(names) or '(no Linear/Conv2d layers)'}")
    with torch.no_grad():
        layers = [_decompose(name, module) for name, module in chosen]
        ranks = _ranks(layers, config)
        report = {}
        for layer in layers:
            r = ranks[layer.name]
            saves = layer.saves(r)
            if saves:
                replace_module(model, layer.name, _factor(layer, r))
            # a layer left dense keeps its full rank and all its energy; chosen_rank says what was considered
            report[layer.name] = {"shape": list(layer.module.weight.shape), "factorized": saves,
                                  "rank": r if saves else len(layer.s), "chosen_rank": r, "full_rank": len(layer.s),
                                  "energy_kept": float(layer.cum[r - 1]) if saves else 1.0,
                                  "params_before": layer.dense, "params_after": layer.cost(r)}
    before = sum(v["params_before"] for v in report.values())
    after = sum(v["params_after"] for v in report.values())
    if finetune:
        ctx.fit(loaded, finetune)
    return {"layers": report, "params_before": before, "params_after": after, "params_kept": after / before,
            "factorized": sum(v["factorized"] for v in report.values()),
            "left_dense": [n for n, v in report.items() if not v["factorized"]], "skipped": skipped}


def _search(trial, space) -> Factorize:
    return Factorize(target_params=trial.suggest_float("factorize.target_params", 0.3, 0.8, step=0.05))


register(Method("factorize", "factorize", Factorize, factorize,
                "low-rank factorization of Linear/Conv2d weights (truncated SVD)", structured=True,
                breaks=frozenset({SHARED, SPARSE}), options=("rank", "energy", "target_params", "layers"),
                search=_search, stronger={"factorize.target_params": -1}))
