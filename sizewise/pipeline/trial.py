"""One candidate of a shrink search: prune (and fine-tune), then quantize, then verify and measure.

A trial runs from plain, picklable inputs (the baseline's run directory and the data spec), so the same function
runs in this process or on a Ray worker, and it writes its artifact under ``OUT/trials/NNNN`` atomically before
reporting back: a finished trial is never lost, whatever happens to the search afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUANTIZERS = ("int8-dynamic", "int8-static", "fp16")


@dataclass(frozen=True)
class TrialPlan:
    number: int
    prune: str | None = None
    sparsity: float | None = None
    quantize: str | None = None

    def describe(self) -> str:
        steps = []
        if self.prune:
            steps.append(f"{self.prune} pruning {self.sparsity:.0%}")
        if self.quantize:
            steps.append(self.quantize)
        return " → ".join(steps) or "no compression"


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    plan: TrialPlan
    state: str  # "complete" | "pruned" | "failed"
    metric: float | None = None
    proxy_metric: float | None = None
    objectives: dict[str, float] = field(default_factory=dict)
    card: dict[str, Any] | None = None
    artifact: str | None = None
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class TrialContext:
    baseline_dir: str
    data: str
    out: str
    runtime: str
    metric: str
    baseline_metric: float
    baseline_proxy_metric: float  # the baseline on the same proxy subset: subsets differ in difficulty
    allowed_drop_points: float
    finetune_epochs: int
    finetune_lr: float
    finetune_samples: int | None
    proxy_fraction: float
    measure: dict[str, Any]
    seed: int
    proxy_may_stop: bool = True  # False until one trial completed, so a search always has a model to hand back


def proxy_size(n_heldout: int, fraction: float) -> int:
    return max(1, int(n_heldout * fraction))


def _pruners(methods: tuple[str, ...], task: str) -> list[str]:
    pruners = [m for m in methods if m in ("channel", "magnitude") and task == "image-classification"]
    return pruners + [m for m in methods if m == "head" and task != "image-classification"]


def initial_design(methods: tuple[str, ...], task: str) -> list[dict]:
    """One trial per quantizer alone, then each pruner at a middle sparsity with a quantizer (cycled)."""
    quantizers = [m for m in methods if m in QUANTIZERS]
    design = [{"prune": "none", "quantize": q} for q in quantizers]
    for i, pruner in enumerate(_pruners(methods, task)):
        middle = 0.7 if pruner == "magnitude" else 0.4
        design.append({"prune": pruner, f"{pruner}_sparsity": middle,
                       "quantize": quantizers[i % len(quantizers)] if quantizers else "none"})
    return design


def sample_plan(trial, methods: tuple[str, ...], task: str) -> TrialPlan:
    """Optuna define-by-run: which pruning (if any) at what sparsity, then which quantization (if any)."""
    pruners = _pruners(methods, task)
    prune = trial.suggest_categorical("prune", ["none", *pruners])
    sparsity = None
    if prune != "none":
        high = 0.9 if prune == "magnitude" else 0.7
        sparsity = trial.suggest_float(f"{prune}_sparsity", 0.1, high, step=0.05)
    quant = trial.suggest_categorical("quantize", ["none", *[m for m in methods if m in QUANTIZERS]])
    return TrialPlan(trial.number, None if prune == "none" else prune, sparsity, None if quant == "none" else quant)


def _prune_config(plan: TrialPlan):
    from sizewise.compress.prune import ChannelPrune, HeadPrune, MagnitudePrune

    if plan.prune == "channel":
        return ChannelPrune(plan.sparsity, skip_unprunable=True)
    if plan.prune == "head":
        return HeadPrune(plan.sparsity)
    return MagnitudePrune(plan.sparsity, scope="layer")


def _quant_config(plan: TrialPlan, runtime: str):
    from sizewise.compress.quantize import HalfPrecision, Int8Dynamic, Int8Static

    if plan.quantize == "int8-dynamic":
        return Int8Dynamic(runtime=runtime)
    if plan.quantize == "int8-static":
        return Int8Static(runtime=runtime, calibration_samples=64)
    return HalfPrecision("fp16", runtime=runtime)


def run_trial(plan: TrialPlan, ctx: TrialContext) -> TrialOutcome:
    """Everything heavy happens here; exceptions become a failed outcome with the message."""
    import copy
    import tempfile

    import torch

    import sizewise
    from sizewise.core.budget import points
    from sizewise.measure import MeasureConfig
    from sizewise.pipeline.results import objectives_of

    started = time.perf_counter()
    torch.manual_seed(ctx.seed + plan.number)
    try:
        dataset = sizewise.load_dataset(ctx.data)
        loaded = sizewise.load(ctx.baseline_dir)
        if plan.prune:
            config = _prune_config(plan)
            from sizewise.compress.registry import METHODS

            finetune, train_data = None, dataset
            if ctx.finetune_epochs and "train" in dataset.splits:
                finetune = sizewise.TrainConfig(epochs=ctx.finetune_epochs, lr=ctx.finetune_lr, seed=ctx.seed)
                if ctx.finetune_samples:
                    train_data = copy.copy(dataset)
                    train_data.splits = {**dataset.splits, "train": dataset.split("train").head(ctx.finetune_samples)}
            method = next(METHODS.get(n) for n in METHODS.names() if isinstance(config, METHODS.get(n).config))
            method.apply(loaded, config, train_data, finetune)
            loaded.module.eval()
        proxy_n = proxy_size(len(dataset.split()), ctx.proxy_fraction)
        with tempfile.TemporaryDirectory() as tmp:
            if plan.quantize:
                from sizewise.compress.quantize import quantize

                result = quantize(copy.copy(loaded), _quant_config(plan, ctx.runtime), Path(tmp) / "q",
                                  dataset=None if plan.quantize != "int8-static" else dataset,
                                  measure_config=MeasureConfig(measure_memory=False, latency_seconds=0.05,
                                                               throughput_sweep=(1,)), sensitivity=False)
                loaded = sizewise.load(result.model_dir.parent)
            proxy = sizewise.evaluate(loaded, dataset, limit=proxy_n)[ctx.metric]
            # multi-fidelity: a candidate already far outside the budget on a quarter of the data is dropped here,
            # before the full evaluation and the (slow) measurement. Slack: twice the budget plus two examples' worth
            # of accuracy (or one Spearman point), so subset noise alone does not stop a good candidate.
            slack = 200 / proxy_n if ctx.metric == "accuracy" else 1.0
            if ctx.proxy_may_stop and points(ctx.metric, ctx.baseline_proxy_metric) - points(ctx.metric, proxy) > \
                    2 * ctx.allowed_drop_points + slack:
                return TrialOutcome(plan.number, plan, "pruned", proxy_metric=proxy,
                                    seconds=time.perf_counter() - started,
                                    message=f"proxy {ctx.metric} {points(ctx.metric, proxy):.2f} on {proxy_n} examples")
            artifact = Path(ctx.out) / "trials" / f"{plan.number:04d}"
            sizewise.save_model(loaded, artifact / "model")
        final = sizewise.load(str(artifact))
        card = sizewise.measure(final, MeasureConfig(**ctx.measure), dataset=dataset)
        card.to_json(artifact / "card.json")
        objectives = objectives_of(card.to_dict())
        return TrialOutcome(plan.number, plan, "complete", metric=card.metrics[ctx.metric], proxy_metric=proxy,
                            objectives=objectives, card=card.to_dict(), artifact=str(artifact),
                            seconds=time.perf_counter() - started)
    except Exception as exc:  # a failed candidate is a result too: recorded, and the search goes on
        return TrialOutcome(plan.number, plan, "failed", seconds=time.perf_counter() - started,
                            message=f"{type(exc).__name__}: {str(exc)[:300]}")
