"""What a shrink search is asked to do, validated up front so a bad flag fails before any training.

The methods a search may use are the registry's: ``--methods`` takes registered method names and family names, and
holds no list of its own, so a method registered with a ``search`` function is at once a shrink option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError

OBJECTIVES = ("latency", "size", "energy", "flops")
# where a search measures its candidates: llama.cpp for causal LMs (their int4 GGUF methods), onnxruntime or torch
# for the rest
SEARCH_RUNTIMES = ("onnxruntime", "torch", "llamacpp", "ortgenai")
EXECUTORS = ("local", "ray")
# A trial's plan is built slot by slot, in this order; each slot holds at most one step, picked among the searchable
# methods of its families. Structure first (it trains on the float model), weight sharing next, and last what fixes
# the deployed form: quantizers and runtime rewrites both make the ONNX graph, so they exclude each other (onnxruntime's
# quantizer cannot read a graph ort-optimize has fused).
SLOTS = (("structure", ("prune", "distill", "factorize")), ("cluster", ("cluster",)),
         ("deploy", ("runtime", "quantize")))
SEARCH_FAMILIES = tuple(f for _, families in SLOTS for f in families)
DEFAULT_METHODS = ("prune", "quantize")  # the others train longer (distill) or suit one objective (cluster: size)


@dataclass(frozen=True)
class ShrinkConfig:
    max_drop: Budget = field(default_factory=lambda: Budget(0.01, absolute=False))
    objective: str = "latency"
    runtime: str = "onnxruntime"
    methods: tuple[str, ...] = DEFAULT_METHODS  # method names and/or family names (see resolve_methods)
    trials: int = 12
    time_budget_s: float | None = None
    executor: str = "local"
    ray_address: str | None = None
    parallel: int = 1  # trials at once; >1 only on a machine with cores to spare, or latencies disturb each other
    storage: str | None = None  # an optuna RDB URL; default: sqlite in the output directory
    seed: int = 0
    finetune_epochs: int = 2  # recovery training after a structure or sharing step; 0 = none
    finetune_lr: float = 1e-3
    recovery_teacher: bool = True  # recovery training learns from the baseline (KD) as well as from the labels
    distill_epochs: int | None = None  # a student's training; None = finetune_epochs (at least 1)
    # a student's learning rate: it relearns more than a pruned copy recovers (Minitron-style students train at ~1e-4
    # where a recovery fine-tune of the same encoder uses 2e-5); None = finetune_lr
    distill_lr: float | None = None
    finetune_samples: int | None = None  # train on N training examples drawn from the split (large sets, small CPUs)
    # a text file of sentences (one per line, no labels) distillation students learn on instead of the train split:
    # students of a sentence encoder come within a point of the teacher only on tens of thousands of sentences
    distill_unlabeled: str | None = None
    proxy_fraction: float = 0.25  # share of the validation split a trial must pass before its full measurement
    batch_size: int = 1
    seq_len: int | None = None
    threads: int | None = None
    latency_seconds: float = 0.5
    compare_seconds: float = 10.0  # interleaved timing of the chosen model against each fp32 baseline, on test
    sensitivity: bool = True  # per-layer int8 sensitivity of the baseline for the report (a minute on MiniLM)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective '{self.objective}'", hint=f"choose one of: {', '.join(OBJECTIVES)}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor '{self.executor}'", hint=f"choose one of: {', '.join(EXECUTORS)}")
        if self.runtime not in SEARCH_RUNTIMES:
            raise ConfigError(f"unknown runtime '{self.runtime}'", hint=f"choose one of: {', '.join(SEARCH_RUNTIMES)}")
        resolve_methods(self.methods)
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
        if not self.compare_seconds > 0:
            raise ConfigError(f"compare_seconds must be > 0, got {self.compare_seconds}")
        if self.distill_lr is not None and not self.distill_lr > 0:
            raise ConfigError(f"distill_lr must be > 0, got {self.distill_lr}")
        if self.distill_epochs is not None and self.distill_epochs < 1:
            raise ConfigError(f"distill_epochs must be a positive integer, got {self.distill_epochs}")
        if self.distill_unlabeled is not None and not Path(self.distill_unlabeled).is_file():
            raise ConfigError(f"the unlabeled sentences file {self.distill_unlabeled} does not exist",
                              hint="one sentence per line, for distillation students to learn on")

    @property
    def student_epochs(self) -> int:
        return self.distill_epochs if self.distill_epochs is not None else max(1, self.finetune_epochs)


def resolve_methods(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The registered method names ``names`` stand for (a family name means its searchable methods), in registry
    order; an unknown or unsearchable name is an error that lists what can be searched."""
    from sizewise.compress.registry import get_method, list_methods

    searchable = [n for n in list_methods() if get_method(n).search is not None
                  and get_method(n).family in SEARCH_FAMILIES]
    known = f"searchable methods: {', '.join(searchable)}; families: {', '.join(SEARCH_FAMILIES)}"
    if not names:
        raise ConfigError("no methods to search", hint=known)
    chosen: set[str] = set()
    for name in names:
        if name in SEARCH_FAMILIES:
            chosen.update(n for n in searchable if get_method(n).family == name)
        elif name in searchable:
            chosen.add(name)
        elif name in list_methods():
            raise ConfigError(f"method '{name}' is not searched by shrink (it has no search space)",
                              hint=f"use it in a recipe (`sizewise compress`); {known}")
        else:
            raise ConfigError(f"unknown method '{name}'", hint=known)
    return tuple(n for n in searchable if n in chosen)


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
