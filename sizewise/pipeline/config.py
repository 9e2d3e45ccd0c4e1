"""What a shrink search is asked to do, validated up front so a bad flag fails before any training."""

from __future__ import annotations

from dataclasses import dataclass, field

from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError

OBJECTIVES = ("latency", "size", "energy", "flops")
EXECUTORS = ("local", "ray")
ALL_METHODS = ("channel", "magnitude", "head", "int8-dynamic", "int8-static", "fp16")
PRUNING = {"channel", "magnitude", "head"}


@dataclass(frozen=True)
class ShrinkConfig:
    max_drop: Budget = field(default_factory=lambda: Budget(0.01, absolute=False))
    objective: str = "latency"
    runtime: str = "onnxruntime"
    methods: tuple[str, ...] = ALL_METHODS
    trials: int = 12
    time_budget_s: float | None = None
    executor: str = "local"
    ray_address: str | None = None
    parallel: int = 1  # trials at once; >1 only on a machine with cores to spare, or latencies disturb each other
    storage: str | None = None  # an optuna RDB URL; default: sqlite in the output directory
    seed: int = 0
    finetune_epochs: int = 2
    finetune_lr: float = 1e-3
    finetune_samples: int | None = None  # fine-tune on the first N training examples (large sets on small CPUs)
    proxy_fraction: float = 0.25  # share of the held-out data a trial must pass before its full evaluation
    batch_size: int = 1
    seq_len: int | None = None
    threads: int | None = None
    latency_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{self.objective}'", hint=f"choose one of: {', '.join(OBJECTIVES)}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor '{self.executor}'", hint=f"choose one of: {', '.join(EXECUTORS)}")
        if self.runtime not in ("onnxruntime", "torch"):
            raise ConfigError(f"unknown runtime '{self.runtime}'", hint="choose onnxruntime or torch")
        unknown = set(self.methods) - set(ALL_METHODS)
        if unknown or not self.methods:
            raise ConfigError(f"unknown method(s) {sorted(unknown) or '(none given)'}",
                              hint=f"choose from: {', '.join(ALL_METHODS)}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"trials must be a positive integer, got {self.trials!r}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"the time budget must be positive, got {self.time_budget_s}")
        if not isinstance(self.parallel, int) or self.parallel < 1:
            raise ConfigError(f"parallel must be a positive integer, got {self.parallel!r}")
        if not 0 < self.proxy_fraction <= 1:
            raise ConfigError(f"proxy_fraction must be in (0, 1], got {self.proxy_fraction}")
        if self.finetune_samples is not None and self.finetune_samples < 1:
            raise ConfigError(f"finetune_samples must be a positive integer, got {self.finetune_samples}")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")


def parse_duration(text: str | None) -> float | None:
    """'30m', '90s', '1.5h' or plain seconds."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            return float(value[:-1]) * units[value[-1]]
        return float(value)
    except ValueError:
        raise ConfigError(f"cannot read the duration '{text}'", hint="use e.g. 90s, 30m or 1.5h") from None
