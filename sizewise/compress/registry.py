"""The one registry of transformations: every method is a frozen config dataclass and a handler registered once.

torchao's ``quantize_(model, Config)`` and timm's ``@register_model`` are the pattern. An entry says what the rest of
sizewise needs to know, so that the CLI, recipes and ``shrink`` all read this table and keep none of their own:

- ``family``: the command a method belongs to (``sizewise prune --method NAME``, ``sizewise quantize ...``);
- ``needs_data`` / ``trains`` / ``structured`` (changes shapes) / ``runtimes`` (where its result runs);
- ``leaves`` / ``breaks``: invariants later steps must keep (``sparse``: pruned weights stay zero; ``shared``: shared
  weights stay shared), and the ones it ends;
- ``options``: the config fields a command line sets; ``preset``: fields fixed by the name (``int4-weight`` is
  ``WeightOnly(bits=4)``);
- ``search``: how ``shrink`` samples a config of it (an Optuna define-by-run function), or None when it is not searched.

A handler is ``handler(model, config, ctx) -> StepOutput``: it may change ``model`` in place or return a new one
(a student, an ONNX graph). ``ctx`` gives it the data *without the test split*, the training settings, a working
folder for checkpoints and files, and the teacher for knowledge distillation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizewise.core.errors import ConfigError, DataError
from sizewise.core.progress import Progress, silent
from sizewise.core.registry import Registry

FAMILIES = ("train", "prune", "quantize", "distill", "finetune", "factorize", "cluster", "encode", "runtime")
SPARSE, SHARED = "sparse", "shared"


@dataclass
class StepContext:
    """What a handler may use besides its model and config."""

    data: Any = None  # sizewise.data.Dataset without its test split, or None
    train: Any = None  # sizewise.train.TrainConfig for the step's training (recovery, distillation), or None
    workdir: Path | None = None  # this step's folder: checkpoints and intermediate files; resumable
    invariants: frozenset[str] = frozenset()  # in force from earlier steps (SPARSE, SHARED)
    teacher: Any = None  # LoadedModel the step may learn from (the plan's input model)
    budget: Any = None  # sizewise.core.budget.Budget the run must hold (quantization falls back to meet it)
    progress: Progress = silent
    resume: bool = True  # continue a training checkpoint found in workdir
    eval_limit: int | None = None  # decisions evaluate N validation examples only (Split.sample)
    # Recovery training (after pruning, factorizing, sharing) learns from ``teacher`` as well as from the labels:
    # the uncompressed model knows more than the labels say (its soft outputs), and a search always has it at hand.
    recovery_teacher: bool = False
    # Called with the model once, when the step's first training begins (after the step changed it): a search measures
    # how far the model's outputs moved and may raise to stop a hopeless candidate before its recovery is paid for.
    # What it returns is kept in ``recovery_check`` for the step's record.
    before_recovery: Callable[[Any], dict[str, Any] | None] | None = None
    recovery_check: dict[str, Any] | None = field(default=None, init=False)
    learned_from_teacher: bool = field(default=False, init=False)  # set once fit() distilled; the record says so

    def need_data(self, method: str):
        if self.data is None:
            raise DataError(f"{method} needs data", hint="pass --data (or data= in Python)")
        return self.data

    def need_train(self, method: str, default=None):
        if self.train is None and default is None:
            raise ConfigError(f"{method} trains while it works", hint="give it epochs (--epochs / --finetune-epochs)")
        return self.train or default

    def fit(self, model, config=None, *, tag: str = "", **kwargs):
        """The one training loop on this step's data, checkpointed under ``workdir`` so a killed run resumes."""
        from sizewise.train import train

        data = self.need_data("training")
        if self.before_recovery is not None and self.recovery_check is None:
            self.recovery_check = self.before_recovery(model) or {}
        out = None if self.workdir is None else (self.workdir / tag if tag else self.workdir)
        if "objective" not in kwargs and self._can_distill(model, data):
            from sizewise.compress.distill import DistillConfig, Distillation

            kwargs["objective"] = Distillation(model, self.teacher, data, DistillConfig(), labelled=True)
            if not self.learned_from_teacher:
                self.progress("recovery learns from the uncompressed model too (knowledge distillation, T=2, "
                              "alpha=0.5)")
            self.learned_from_teacher = True
        return train(model, data, config or self.need_train("training"), out=out, resume=self.resume and out is not None,
                     bar=True, **kwargs)

    def _can_distill(self, model, data) -> bool:
        """KD needs a PyTorch teacher of the same task whose outputs the student's match (a pruned or factorized copy
        of it does; a classifier whose head changed does not)."""
        teacher = self.teacher
        if not self.recovery_teacher or teacher is None or teacher is model or getattr(teacher, "is_onnx", True):
            return False
        if data.task not in ("image-classification", "text-classification", "sentence-similarity", "causal-lm"):
            return False
        return data.task in ("sentence-similarity", "causal-lm") or getattr(data, "num_classes", None) is not None


@dataclass(frozen=True)
class SearchSpace:
    """What a search knows about the model when it asks a method for a config."""

    task: str  # the model's task (image-classification, text-classification, sentence-embedding, ...)
    input_kind: str  # "tensor" | "tokens" | "onnx"
    runtime: str  # where candidates are measured
    objective: str  # latency | size | energy | flops
    # the distinct input widths of the model's linear layers (torch models; empty for ONNX graphs): a grouped
    # quantizer offers only group sizes that divide every one of them
    linear_widths: tuple[int, ...] = ()
    decoder_blocks: int = 0  # a causal LM's transformer blocks (0 for other models): how many depth pruning may drop


@dataclass
class StepOutput:
    model: Any  # LoadedModel
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    config: type
    apply: Callable[[Any, Any, StepContext], StepOutput]
    summary: str
    needs_data: bool = False
    trains: bool = False
    structured: bool = False
    runtimes: tuple[str, ...] = ("torch", "onnxruntime")
    leaves: frozenset[str] = frozenset()
    breaks: frozenset[str] = frozenset()
    options: tuple[str, ...] = ()
    preset: dict[str, Any] = field(default_factory=dict)
    search: Callable | None = None  # (optuna trial, SearchSpace) -> config
    # the search parameters that set how much the step removes: +1 where a larger value removes more (a sparsity),
    # -1 where it keeps more (a student's layers). The search steps along them from a trial it learned from.
    stronger: dict[str, int] = field(default_factory=dict)
    applies: Callable[[Any], bool] = lambda _space: True  # (SearchSpace) -> whether shrink proposes it for a model
    encoding: str | None = None  # the artifact's weight encoding (sizewise.models.artifact.save_model)
    accepts_onnx: bool = False  # can run on a model that is already an ONNX graph
    makes_onnx: Callable[[Any], bool] = lambda _config: False  # whether its result is an ONNX graph
    # the number format its result computes in ("int8", "int4", "bfloat16", "float16"); None leaves it as it was.
    # Which CPU instruction sets decide a plan's speed follows from it (VNNI/AMX for int8, AVX512-BF16/AMX for bf16).
    kernel: str | None = None

    def make(self, **fields: Any):
        """A config of this method from ``fields`` (the preset wins over nothing: giving a preset field is an error)."""
        clash = set(fields) & set(self.preset)
        if clash:
            raise ConfigError(f"{self.name} fixes {', '.join(sorted(clash))}",
                              hint=f"drop {', '.join(sorted(clash))}, or use another method name")
        known = {f.name for f in dataclasses.fields(self.config) if f.init}
        unknown = set(fields) - known
        if unknown:
            raise ConfigError(f"{self.name} has no option {', '.join(sorted(unknown))}",
                              hint=f"its options: {', '.join(sorted(known - set(self.preset)))}")
        try:
            return self.config(**self.preset, **fields)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"{self.name}: {exc}") from exc

    def matches(self, config: Any) -> bool:
        return type(config) is self.config and all(getattr(config, k) == v for k, v in self.preset.items())

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "summary": self.summary, "needs_data": self.needs_data,
                "trains": self.trains, "structured": self.structured, "runtimes": list(self.runtimes),
                "leaves": sorted(self.leaves), "config": self.config.__name__, "preset": self.preset,
                "searchable": self.search is not None}


METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    if method.family not in FAMILIES:
        raise ValueError(f"method {method.name}: unknown family {method.family!r}")
    return METHODS.register(method.name)(method)


def _ensure_registered() -> None:
    # Importing the method modules registers them; done on first use so that ``import sizewise`` stays light.
    import sizewise.compress  # noqa: F401


def list_methods(family: str | None = None) -> list[str]:
    """Every registered method's name (of one ``family`` if given)."""
    _ensure_registered()
    return [n for n in METHODS.names() if family is None or METHODS.get(n).family == family]


def get_method(name: str) -> Method:
    _ensure_registered()
    return METHODS.get(name)


def method_for(config: Any) -> Method:
    """The registered method a config object belongs to."""
    _ensure_registered()
    found = [METHODS.get(n) for n in METHODS.names() if METHODS.get(n).matches(config)]
    if not found:
        raise ConfigError(f"{type(config).__name__} is not the config of a registered method",
                          hint=f"known methods: {', '.join(METHODS.names())}")
    return max(found, key=lambda m: len(m.preset))  # the most specific name: int4-weight over a generic entry


def make_config(name: str, **fields: Any):
    """``make_config("magnitude", sparsity=0.5)`` -> ``MagnitudePrune(sparsity=0.5)``."""
    return get_method(name).make(**fields)
