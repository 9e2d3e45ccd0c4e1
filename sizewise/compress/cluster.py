"""Weight sharing (Han et al., Deep Compression, section 3): per-layer k-means codebooks, then centroid fine-tuning.

Every Linear/Conv weight becomes ``codebook[index]``: the layer stores a few float centroids plus a ``bits``-bit index
per weight. Pruned weights (exact zeros) are not clustered and stay zero, so sharing composes with pruning; a layer
with zeros gets ``2**bits - 1`` centroids so that "zero" plus the centroids still fit in ``bits`` bits.

Fine-tuning moves the centroids, not the weights (:func:`finetune_centroids`): the weight is a
``torch.nn.utils.parametrize`` function of the codebook, ``where(nonzero, codebook[index], 0)``, so autograd sums the gradients of all weights of a cluster into
its centroid -- exactly the paper's "gradients grouped by colour". Afterwards the parametrization is removed and the
module is an ordinary one whose weights take at most ``2**bits`` values: the compressed format finds and codes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from sizewise.compress.prune.masks import PRUNABLE
from sizewise.compress.registry import SHARED, Method, StepContext, register
from sizewise.core.errors import ConfigError
from sizewise.models.artifact import ENCODING_DEEP_COMPRESSION
from sizewise.train import TrainConfig

INITS = ("linear", "density", "random")


@dataclass(frozen=True)
class ClusterWeights:
    """``bits`` for every layer, or the paper's split: ``conv_bits`` for convolutions, ``linear_bits`` for FC."""

    bits: int | None = None
    conv_bits: int = 8
    linear_bits: int = 5
    init: str = "linear"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bits", "conv_bits", "linear_bits"):
            value = getattr(self, name)
            if value is None and name == "bits":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8:
                raise ConfigError(f"{name} must be an integer from 1 to 8, got {value!r}",
                                  hint="2**bits centroids per layer; the paper used 8 for conv and 5 for FC layers")
        if self.init not in INITS:
            raise ConfigError(f"unknown centroid init '{self.init}'", hint=f"choose one of: {', '.join(INITS)}")

    def bits_for(self, layer: nn.Module) -> int:
        if self.bits is not None:
            return self.bits
        return self.linear_bits if isinstance(layer, nn.Linear) else self.conv_bits


class SharedWeight(nn.Module):
    """The parametrization ``codebook -> weight``; ``right_inverse`` hands the initial codebook to torch."""

    def __init__(self, indices: torch.Tensor, nonzero: torch.Tensor, codebook: torch.Tensor):
        super().__init__()
        self.register_buffer("indices", indices)
        self.register_buffer("nonzero", nonzero)
        self._initial = codebook

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return torch.where(self.nonzero, codebook[self.indices], torch.zeros((), dtype=codebook.dtype))

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return self._initial.to(weight.dtype)


def initial_centroids(values: np.ndarray, k: int, init: str, rng: np.random.Generator) -> np.ndarray:
    """The paper's three initialisations: linear (even spacing over [min, max]), density (even spacing of the
    CDF, i.e. quantiles) and random (Forgy: k weights drawn at random)."""
    if init == "linear":
        return np.linspace(values.min(), values.max(), k)
    if init == "density":
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    return rng.choice(values, size=k, replace=False)


def kmeans_codebook(weight: torch.Tensor, bits: int, init: str, seed: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
    """(codebook, per-weight indices, non-zero mask) for one layer; 1-D k-means by scikit-learn from our init."""
    from sklearn.cluster import KMeans

    w = weight.detach().cpu().float()
    nonzero = w != 0
    values = w[nonzero].numpy().astype(np.float64)
    if values.size == 0:
        return torch.zeros(1, dtype=weight.dtype), torch.zeros_like(w, dtype=torch.long), nonzero
    k = 2 ** bits - (1 if (~nonzero).any() else 0)  # keep a symbol free for "zero" when the layer is sparse
    k = max(1, min(k, np.unique(values).size))
    start = initial_centroids(values, k, init, np.random.default_rng(seed)).reshape(-1, 1)
    fit = KMeans(n_clusters=k, init=start, n_init=1, max_iter=100, random_state=seed).fit(values.reshape(-1, 1))
    codebook = torch.from_numpy(fit.cluster_centers_.ravel()).to(weight.dtype)
    indices = torch.zeros_like(w, dtype=torch.long)
    indices[nonzero] = torch.from_numpy(fit.labels_.astype(np.int64))
    return codebook, indices, nonzero


def shareable_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Linear/Conv layers, each weight once (tied weights share one codebook)."""
    found, seen = {}, set()
    for name, sub in module.named_modules():
        if isinstance(sub, PRUNABLE) and id(sub.weight) not in seen and not parametrize.is_parametrized(sub):
            seen.add(id(sub.weight))
            found[name] = sub
    return found


def distinct_values(weight: torch.Tensor) -> int:
    return int(torch.unique(weight.detach()[weight.detach() != 0]).numel())


def finetune_centroids(loaded, ctx: StepContext, finetune: TrainConfig) -> dict[str, int]:
    """Fine-tune the shared values of every layer whose weights already take few values (after :func:`cluster`):
    each distinct value becomes a trainable centroid, so sharing (and every zero) survives training exactly."""
    shared = {}
    for name, layer in shareable_layers(loaded.module).items():
        w = layer.weight.detach()
        nonzero = w != 0
        if not nonzero.any() or distinct_values(w) > 256:
            continue  # not a shared layer: trains freely
        codebook, inverse = torch.unique(w[nonzero], return_inverse=True)
        indices = torch.zeros_like(w, dtype=torch.long)
        indices[nonzero] = inverse
        parametrize.register_parametrization(layer, "weight", SharedWeight(indices, nonzero, codebook), unsafe=True)
        shared[name] = int(codebook.numel())
    try:
        ctx.fit(loaded, finetune)
    finally:
        for layer in loaded.module.modules():
            if isinstance(layer, PRUNABLE) and parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return shared


def cluster(loaded, config: ClusterWeights, ctx: StepContext) -> dict:
    """k-means each layer's non-zero weights into ``2**bits`` shared values, then (optionally) fine-tune them."""
    finetune = ctx.train
    layers = shareable_layers(loaded.module)
    if not layers:
        raise ConfigError(f"'{loaded.reference}' has no Linear or Conv layers to share weights in")
    report = {}
    for name, layer in layers.items():
        bits = config.bits_for(layer)
        codebook, indices, nonzero = kmeans_codebook(layer.weight, bits, config.init, config.seed)
        with torch.no_grad():
            layer.weight.copy_(SharedWeight(indices, nonzero, codebook)(codebook))
        report[name] = {"bits": bits, "centroids": int(codebook.numel()), "nonzero": float(nonzero.float().mean())}
    if finetune:
        finetune_centroids(loaded, ctx, finetune)
    for name, layer in layers.items():
        report[name]["distinct_values"] = distinct_values(layer.weight)
    return {"layers": report, "init": config.init, "finetuned": bool(finetune)}


def _search(trial, space) -> ClusterWeights:
    return ClusterWeights(bits=trial.suggest_int("cluster.bits", 3, 8))


register(Method("cluster", "cluster", ClusterWeights, cluster,
                "weight sharing: per-layer k-means codebooks, fine-tuned centroids", leaves=frozenset({SHARED}),
                options=("bits", "conv_bits", "linear_bits", "init"), search=_search, stronger={"cluster.bits": -1},
                applies=lambda space: space.objective == "size", encoding=ENCODING_DEEP_COMPRESSION))
