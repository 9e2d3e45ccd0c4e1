"""The Python API: what ``import sizewise`` offers, each name defined once in the module that owns it.

The command line is a thin layer over these same functions. A PyTorch user's own ``nn.Module`` works everywhere
a model reference does once it is wrapped::

    model = sizewise.wrap(my_module, torch.randn(1, 1, 8, 8), task="image-classification")
    pruned = sizewise.apply(model, sizewise.MagnitudePrune(0.5))          # in memory: no files, no measuring
    result = sizewise.run(model, sizewise.Plan.of(sizewise.MagnitudePrune(0.5), sizewise.Int8Dynamic()),
                          data="digits", out="runs/mlp")                   # the executor: files, cards, record
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sizewise.compress import get_method, list_methods, method_for  # noqa: F401  (re-exported)
from sizewise.compress.cluster import ClusterWeights
from sizewise.compress.distill import Distill
from sizewise.compress.encode import HuffmanEncode
from sizewise.compress.export import OnnxExport, OrtOptimize
from sizewise.compress.factorize import Factorize
from sizewise.compress.prune import (
    AttentionHeadPrune,
    ChannelPrune,
    DepthPrune,
    FFNPrune,
    GradualPrune,
    HeadPrune,
    LotteryPrune,
    MagnitudePrune,
    NMPrune,
    WandaPrune,
)
from sizewise.compress.quantize import (
    HalfPrecision,
    Int8Dynamic,
    Int8Static,
    LLMWeightInt4,
    OrtGenAIInt4,
    QuantizationAwareTraining,
    SmoothQuantW8A8,
    WeightOnly,
)
from sizewise.compress.registry import StepContext, StepOutput
from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError
from sizewise.core.progress import Progress, silent
from sizewise.data import Dataset, load_dataset
from sizewise.estimate import Estimate
from sizewise.estimate import estimate as _estimate
from sizewise.measure import EnergySettings, MeasureConfig, ModelCard
from sizewise.measure import measure as _measure
from sizewise.measure.compare import CompareConfig, Comparison
from sizewise.measure.compare import compare as _compare
from sizewise.models.artifact import save_model
from sizewise.models.loaded import TASKS, InputSpec, LoadedModel
from sizewise.models.loader import load
from sizewise.pipeline.executor import RunOptions, RunResult
from sizewise.pipeline.executor import run as _run
from sizewise.pipeline.config import ShrinkConfig
from sizewise.pipeline.plan import Plan, Step, load_plan
from sizewise.tasks import evaluate
from sizewise.train import TrainConfig, train
from sizewise.train.finetuning import FinetuneConfig


def wrap(module: nn.Module, example_inputs: torch.Tensor | dict[str, torch.Tensor], task: str = "unknown",
         name: str | None = None, num_classes: int | None = None) -> LoadedModel:
    """A user's own ``nn.Module`` as a model sizewise can measure, compress and run plans on.

    ``example_inputs``: one batch of what ``module`` takes (a tensor, or ``{"argument": tensor}``); sizewise makes
    inputs of other batch sizes with the same per-example shape and dtype. ``task`` picks the evaluator
    (``image-classification``, ...). The module is used as it is (not copied): ``apply`` and ``run`` work on copies.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"sizewise.wrap takes a torch.nn.Module, got {type(module).__name__}")
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'", hint=f"choose one of: {', '.join(TASKS)}")
    if isinstance(example_inputs, torch.Tensor):
        argument = next(iter(inspect.signature(module.forward).parameters), "x")
        example_inputs = {argument: example_inputs}
    if not isinstance(example_inputs, dict) or len(example_inputs) != 1 or \
            not all(isinstance(v, torch.Tensor) for v in example_inputs.values()):
        raise ConfigError("example_inputs must be one tensor (or a one-entry dict of argument name to tensor)",
                          hint="a model with several inputs: wrap a small nn.Module that takes one")
    (argument, tensor), = example_inputs.items()
    if tensor.dim() < 1:
        raise ConfigError("example_inputs needs a batch dimension first, e.g. torch.randn(1, 3, 32, 32)")
    spec = InputSpec(kind="tensor", shape=tuple(tensor.shape[1:]), name=argument,
                     dtype=str(tensor.dtype).removeprefix("torch."))
    loaded = LoadedModel(module, spec, reference=name or f"<{type(module).__name__}>", source="python", task=task,
                         num_classes=num_classes)
    try:
        with torch.inference_mode():
            module.eval()(**loaded.example_inputs(1))
    except Exception as exc:  # the user's module rejects what the user said it takes
        raise ConfigError(f"the module does not run on example inputs of shape {tuple(tensor.shape)}: "
                          f"{type(exc).__name__}: {exc}") from exc
    return loaded


def _as_model(model: LoadedModel | str | nn.Module) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load(model)
    if isinstance(model, nn.Module):
        raise ConfigError("a bare nn.Module needs its example inputs first",
                          hint="sizewise.wrap(module, example_inputs, task=...)")
    raise ConfigError(f"not a model: {type(model).__name__}", hint="a model reference, or sizewise.wrap(module, ...)")


def _as_data(data: Dataset | str | None) -> Dataset | None:
    return load_dataset(data) if isinstance(data, (str, Path)) else data


def apply(model: LoadedModel | str, config: Any, data: Dataset | str | None = None,
          train_config: TrainConfig | None = None, progress: Progress = silent) -> LoadedModel:
    """Apply one method in memory and return the transformed model: no files, no measuring.

    ``model`` itself is not changed. Methods that need data (calibration, training) take ``data``; they see only
    its train and validation splits.
    """
    loaded = _as_model(model)
    method = method_for(config)
    dataset = _as_data(data)
    if method.needs_data and dataset is None:
        raise ConfigError(f"{method.name} needs data", hint="pass data=...")
    if dataset is not None:
        from sizewise.data.dataset import carve_validation

        dataset = carve_validation(dataset).without_test()
    work = copy.copy(loaded)
    work.module = copy.deepcopy(loaded.module)
    output = method.apply(work, config, StepContext(data=dataset, train=train_config, teacher=loaded,
                                                    progress=progress, resume=False))
    result = output.model if isinstance(output, StepOutput) else work
    result.module.eval()
    return result


def measure(model: LoadedModel | str, config: MeasureConfig | None = None, data: Dataset | str | None = None,
            progress: Progress = silent, *, dataset: Dataset | None = None) -> ModelCard:
    """The model card: parameters, bytes, FLOPs, latency, memory, energy, CO2e, and metrics on ``data``'s test
    split (``config.split`` chooses another)."""
    return _measure(_as_model(model), config, dataset=_as_data(data) if data is not None else dataset,
                    progress=progress)


def compare(a: LoadedModel | str, b: LoadedModel | str, config: CompareConfig | None = None) -> Comparison:
    """Time ``a`` and ``b`` interleaved on the same inputs: B's speed-up over A with a 95% interval, and a verdict
    that claims a speed-up only beyond the run-to-run noise."""
    return _compare(_as_model(a), _as_model(b), config)


def run(model: LoadedModel | str, plan: Plan | Any, data: Dataset | str | None = None, out: str | Path = "sizewise-run",
        measure_config: MeasureConfig | None = None, max_drop: Budget | str | float | None = None,
        progress: Progress = silent) -> RunResult:
    """Run a plan with the one executor: every step validated first, checkpointed, guarded; before/after cards;
    ``out/card.json`` in the ``sizewise.run/1`` schema. ``plan`` may also be a single config."""
    plan = plan if isinstance(plan, Plan) else Plan.of(plan)
    budget = Budget.parse(max_drop) if isinstance(max_drop, (str, float, int)) else max_drop
    return _run(_as_model(model), plan, _as_data(data), out,
                RunOptions(measure=measure_config or MeasureConfig(), budget=budget, kind="python",
                           command=f"sizewise.run({plan.describe()})", progress=progress))


def estimate(model: str, **options: Any) -> Estimate:
    """Analytic size and cost of a model too large to run: a preset (``gpt3-175b``), a Hugging Face config.json, or
    any model reference (loaded to count its parameters). ``options``: see ``sizewise.estimate.EstimateConfig``;
    ``bandwidth="here"`` measures this machine's read bandwidth for the decode roofline."""
    return _estimate(model, load_model=load, measure_bandwidth=_read_bandwidth_here, **options)


def _read_bandwidth_here(buffer_bytes: int | None = None) -> tuple[float, str]:
    """This machine's read bandwidth as ``sizewise measure`` takes it for its roofline, at torch's thread count.
    Here, not in sizewise.estimate, because estimate may import sizewise.core only."""
    from sizewise.measure.llm import measure_read_bandwidth

    stats = measure_read_bandwidth(torch.get_num_threads(), buffer_bytes)
    return stats.bytes_per_s, stats.method


def shrink(model: str, data: str, out: str | Path, config: ShrinkConfig | None = None, **kwargs: Any):
    """The search for the smallest or fastest model within an accuracy budget: trials sampled from the registry's
    search spaces, each a plan run by the executor, chosen on validation, reported once on test; writes
    OUT/results.json, OUT/report.html and OUT/report.md."""
    from sizewise.report.shrink_report import shrink as shrink_and_report

    return shrink_and_report(model, data, out, config, **kwargs)


# The names a user can reach as ``sizewise.NAME``; the README's Python section is tested against them.
PUBLIC = {
    "wrap": wrap, "apply": apply, "measure": measure, "compare": compare, "run": run, "shrink": shrink, "list_methods": list_methods, "load": load,
    "load_dataset": load_dataset, "evaluate": evaluate, "estimate": estimate, "train": train,
    "save_model": save_model, "load_plan": load_plan, "Plan": Plan, "Step": Step, "LoadedModel": LoadedModel,
    "ModelCard": ModelCard, "RunResult": RunResult, "MeasureConfig": MeasureConfig, "EnergySettings": EnergySettings,
    "Budget": Budget, "TrainConfig": TrainConfig, "CompareConfig": CompareConfig, "Comparison": Comparison,
    "ShrinkConfig": ShrinkConfig,
    # method configs, one per registered method family
    "MagnitudePrune": MagnitudePrune, "GradualPrune": GradualPrune, "LotteryPrune": LotteryPrune, "NMPrune": NMPrune,
    "ChannelPrune": ChannelPrune, "HeadPrune": HeadPrune, "DepthPrune": DepthPrune, "FFNPrune": FFNPrune,
    "AttentionHeadPrune": AttentionHeadPrune, "WandaPrune": WandaPrune, "Int8Dynamic": Int8Dynamic, "Int8Static": Int8Static,
    "WeightOnly": WeightOnly, "HalfPrecision": HalfPrecision, "QuantizationAwareTraining": QuantizationAwareTraining,
    "Factorize": Factorize, "ClusterWeights": ClusterWeights, "Distill": Distill, "Finetune": FinetuneConfig,
    "HuffmanEncode": HuffmanEncode, "OnnxExport": OnnxExport, "OrtOptimize": OrtOptimize,
    "LLMWeightInt4": LLMWeightInt4, "OrtGenAIInt4": OrtGenAIInt4,
    "SmoothQuantW8A8": SmoothQuantW8A8,
}
