"""Pruning methods as frozen, self-validating configs (one per method, registered with its handler)."""

from __future__ import annotations

from dataclasses import dataclass

from sizewise.core.errors import ConfigError

SCOPES = ("global", "layer")
IMPORTANCES = ("l1", "l2", "bn", "taylor")
DEPTH_IMPORTANCES = ("block-influence",)  # ShortGPT (Men et al. 2024): 1 - cos(block input, block output)


def _check_sparsity(value: float, what: str = "sparsity") -> None:
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{what} must be in [0, 1), got {value!r}",
                          hint="it is the fraction removed: 0.9 keeps 10%")


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope '{scope}'", hint=f"choose one of: {', '.join(SCOPES)}")


@dataclass(frozen=True)
class MagnitudePrune:
    """One-shot magnitude pruning of Linear/Conv weights (Han et al. 2015)."""

    sparsity: float
    scope: str = "global"

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_scope(self.scope)


@dataclass(frozen=True)
class GradualPrune:
    """Zhu & Gupta 2017: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 while fine-tuning, then recovery."""

    sparsity: float
    scope: str = "global"
    initial_sparsity: float = 0.0
    pruning_steps: int = 10  # n: how many times masks are updated
    ramp_fraction: float = 0.75  # the ramp ends at this fraction of fine-tuning; the rest recovers at s_f
    # final sparsity of named layers ("conv1": 0.34), each pruned on its own magnitudes (Han et al. set one threshold
    # per layer from a sensitivity scan); the other layers follow ``sparsity`` and ``scope``
    layer_sparsity: dict[str, float] | None = None

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_sparsity(self.initial_sparsity, "initial_sparsity")
        _check_scope(self.scope)
        if self.layer_sparsity is not None:
            if not isinstance(self.layer_sparsity, dict) or not self.layer_sparsity:
                raise ConfigError(f"layer_sparsity must map layer names to sparsities, got {self.layer_sparsity!r}")
            for name, value in self.layer_sparsity.items():
                _check_sparsity(value, f"layer_sparsity['{name}']")
                if value < self.initial_sparsity:
                    raise ConfigError(f"layer_sparsity['{name}'] {value} is below initial_sparsity "
                                      f"{self.initial_sparsity}")
        if self.initial_sparsity > self.sparsity:
            raise ConfigError(f"initial_sparsity {self.initial_sparsity} is above the final sparsity {self.sparsity}")
        if not isinstance(self.pruning_steps, int) or self.pruning_steps < 1:
            raise ConfigError(f"pruning_steps must be a positive integer, got {self.pruning_steps!r}")
        if not 0 < self.ramp_fraction <= 1:
            raise ConfigError(f"ramp_fraction must be in (0, 1], got {self.ramp_fraction!r}")


@dataclass(frozen=True)
class LotteryPrune:
    """Iterative magnitude pruning with weight rewinding (Frankle & Carbin 2019; Frankle et al. 2020)."""

    sparsity: float
    scope: str = "global"
    rounds: int = 3
    rewind_epoch: int = 0  # rewind survivors to their values after this many epochs of the first round (0 = input)

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_scope(self.scope)
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds must be a positive integer, got {self.rounds!r}")
        if not isinstance(self.rewind_epoch, int) or self.rewind_epoch < 0:
            raise ConfigError(f"rewind_epoch must be >= 0, got {self.rewind_epoch!r}")


@dataclass(frozen=True)
class ChannelPrune:
    """Remove whole channels/neurons (a physically smaller model) through Torch-Pruning's dependency graph."""

    sparsity: float  # fraction of channels removed from each prunable layer
    importance: str = "l1"
    scope: str = "layer"
    skip_unprunable: bool = False  # leave layers the dependency graph cannot handle unpruned instead of stopping
    # keep a multiple of this many channels in every layer (rounded down, never below one multiple): CPU runtimes
    # compute convolutions in channel blocks (onnxruntime's NCHWc layout: 8 wide with AVX2, 16 with AVX-512), so a
    # width between two multiples costs as much as the next one up
    round_to: int = 1

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        _check_scope(self.scope)
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise ConfigError(f"round_to must be a positive integer, got {self.round_to!r}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"unknown importance '{self.importance}'",
                              hint=f"choose one of: {', '.join(IMPORTANCES)}")


@dataclass(frozen=True)
class NMPrune:
    """Semi-structured N:M sparsity: in every group of M consecutive input weights keep the N largest."""

    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and isinstance(self.m, int) and 0 < self.n < self.m):
            raise ConfigError(f"N:M needs 0 < N < M, got {self.n}:{self.m}")

    @property
    def sparsity(self) -> float:
        return 1 - self.n / self.m


@dataclass(frozen=True)
class HeadPrune:
    """Remove attention heads and FFN neurons of a BERT-family encoder; the residual width is kept, so every layer
    keeps its shape contract and the model still loads from its config (plus the saved, smaller shapes)."""

    sparsity: float  # fraction of heads and of FFN neurons removed from every layer
    importance: str = "l1"
    heads: bool = True
    ffn: bool = True

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        if self.importance not in ("l1", "l2", "taylor"):
            raise ConfigError(f"unknown importance '{self.importance}' for heads", hint="choose l1, l2 or taylor")
        if not (self.heads or self.ffn):
            raise ConfigError("nothing to prune: enable heads, ffn or both")


@dataclass(frozen=True)
class DepthPrune:
    """Remove whole decoder blocks of a causal LM, the least important first, measured on calibration text."""

    blocks: int  # how many blocks to remove
    importance: str = "block-influence"
    calibration_samples: int = 16  # windows of calibration_tokens from the train split (never the test split)
    calibration_tokens: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, int) or self.blocks < 1:
            raise ConfigError(f"blocks must be a positive integer, got {self.blocks!r}")
        if self.importance not in DEPTH_IMPORTANCES:
            raise ConfigError(f"unknown importance '{self.importance}' for blocks",
                              hint=f"choose one of: {', '.join(DEPTH_IMPORTANCES)}")
        if self.calibration_samples < 1 or self.calibration_tokens < 2:
            raise ConfigError("calibration needs at least one window of at least 2 tokens")


@dataclass(frozen=True)
class FFNPrune:
    """Remove MLP neurons of every decoder block of a causal LM alike (the model keeps one intermediate size)."""

    sparsity: float  # fraction of each block's MLP neurons removed
    multiple: int = 64  # neurons kept, rounded to a multiple: 4-bit blocks (32/64 wide) need whole rows
    calibration_samples: int = 16
    calibration_tokens: int = 256

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        if not isinstance(self.multiple, int) or self.multiple < 1:
            raise ConfigError(f"multiple must be a positive integer, got {self.multiple!r}")
        if self.calibration_samples < 1 or self.calibration_tokens < 2:
            raise ConfigError("calibration needs at least one window of at least 2 tokens")


@dataclass(frozen=True)
class AttentionHeadPrune:
    """Remove query heads of every decoder block of a causal LM alike, the least important first: under grouped-query
    attention the same number from each group that shares a key/value head (the K/V heads stay), under plain
    multi-head attention a head's key and value go with it. Importance: the mean norm of each head's output."""

    sparsity: float  # fraction of each block's query heads (of each key/value group's) removed, rounded to whole heads
    calibration_samples: int = 16
    calibration_tokens: int = 256

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        if self.calibration_samples < 1 or self.calibration_tokens < 2:
            raise ConfigError("calibration needs at least one window of at least 2 tokens")


WANDA_PATTERNS = ("unstructured", "2:4")


@dataclass(frozen=True)
class WandaPrune:
    """Zero the weights of a causal LM's decoder linear layers with the smallest |weight| x input-activation norm
    (Wanda, Sun et al. 2023), one shot from calibration text: unstructured at ``sparsity``, or 2:4 (two of every
    four consecutive input weights, sparsity 50%)."""

    sparsity: float = 0.5  # fraction of each layer's weights zeroed (2:4: always 0.5)
    pattern: str = "unstructured"
    calibration_samples: int = 32  # windows of calibration_tokens from the train split (never the test split)
    calibration_tokens: int = 512

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)
        if self.pattern not in WANDA_PATTERNS:
            raise ConfigError(f"unknown sparsity pattern '{self.pattern}'", hint=f"choose one of: "
                                                                                 f"{', '.join(WANDA_PATTERNS)}")
        if self.pattern == "2:4" and self.sparsity != 0.5:
            raise ConfigError(f"2:4 sparsity zeroes half of the weights, not {self.sparsity:.0%}",
                              hint="leave --sparsity out with --pattern 2:4")
        if self.calibration_samples < 1 or self.calibration_tokens < 2:
            raise ConfigError("calibration needs at least one window of at least 2 tokens")
