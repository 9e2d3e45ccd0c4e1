"""One candidate of a shrink search: a plan sampled from the registry's search spaces, run by the one executor and
scored on the validation split.

A plan is built slot by slot (:data:`sizewise.pipeline.config.SLOTS`): in each slot Optuna picks one of the selected
methods that ``applies`` to the model, or none, and the method's own ``search`` function samples its config. Steps that
change weights in PyTorch get recovery training; a student gets its distillation epochs.

A trial runs from plain, picklable inputs (its number, a Plan of frozen configs, and a context of paths and numbers),
so the same function runs in this process or on a Ray worker. It runs in ``OUT/trials/NNNN`` through
:func:`sizewise.pipeline.executor.run`, which writes the model, the step log and the run record (``card.json``) there,
before reporting back: a finished trial is never lost. A failed trial leaves its traceback in ``error.txt``.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizewise.pipeline.config import SLOTS
from sizewise.pipeline.plan import Plan, Step

VALIDATION_CARD = "validation.json"  # the baseline's card on the validation split, in OUT/baseline
NONE = "none"


@dataclass(frozen=True)
class TrialJob:
    number: int
    plan: Plan | None  # None: every slot sampled "none", so there is nothing to run


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    plan: dict[str, Any] | None  # Plan.to_dict()
    description: str
    state: str  # "complete" | "pruned" | "failed" | "skipped" (a method already hopeless here: not run)
    metric: float | None = None  # on the validation split: what the search decides on
    proxy_metric: float | None = None  # on the first ``proxy_examples`` validation examples
    objectives: dict[str, float] = field(default_factory=dict)
    artifact: str | None = None  # the trial's run directory: model/, steps.json, card.json (sizewise.run/1)
    seconds: float = 0.0
    message: str = ""
    error: str | None = None  # error.txt of a failed trial: the full traceback
    # each recovered step: {"method", "output_error" (before its recovery), "drop_points" (after it, on the proxy)}
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    # why the search ran this plan: the designed start, a line-search step from an earlier trial, or the sampler
    origin: str = ""


@dataclass(frozen=True)
class TrialContext:
    baseline_dir: str
    data: str
    out: str
    metric: str
    baseline_proxy_metric: float  # the baseline on the same proxy subset: subsets differ in difficulty
    allowed_drop_points: float
    proxy_examples: int
    measure: dict[str, Any]  # MeasureConfig fields
    seed: int
    finetune_samples: int | None = None
    proxy_may_stop: bool = True  # False until one trial completed, so a search always has a model to hand back
    recovery_teacher: bool = True  # recovery training distils from the baseline (see StepContext.recovery_teacher)
    # method -> (output error, trial): the least-damaged candidate of that method that still missed the budget after
    # its recovery (see RecoveryGate); filled by the search from the trials finished so far
    recovery_ceilings: dict[str, tuple[float, int]] = field(default_factory=dict)


# -- sampling ---------------------------------------------------------------------------------------------------------

def search_space(loaded, runtime: str, objective: str):
    from torch import nn

    from sizewise.compress.registry import SearchSpace

    widths = () if loaded.is_onnx else tuple(sorted({m.in_features for m in loaded.module.modules()
                                                     if isinstance(m, nn.Linear)}))
    blocks = 0
    if loaded.task == "causal-lm" and not loaded.is_onnx:
        blocks = int(getattr(loaded.module.config, "num_hidden_layers", 0) or 0)
    return SearchSpace(loaded.task, "onnx" if loaded.is_onnx else loaded.inputs.kind, runtime, objective, widths,
                       blocks)


def slot_methods(methods: tuple[str, ...], space, has_train: bool) -> tuple[dict[str, list[str]], list[str]]:
    """The selected methods each slot may pick for this model (only slots with one), and the ones left out, why."""
    from sizewise.compress.registry import get_method

    slots: dict[str, list[str]] = {}
    left_out = []
    for slot, families in SLOTS:
        for name in methods:
            method = get_method(name)
            if method.family not in families:
                continue
            if space.runtime not in method.runtimes:
                left_out.append(f"{name} (its result runs on {' or '.join(method.runtimes)}, not {space.runtime})")
            elif not method.applies(space):
                left_out.append(f"{name} (not proposed for a {space.task} model on {space.runtime}, objective "
                                f"{space.objective})")
            elif space.input_kind == "onnx" and not method.accepts_onnx:
                left_out.append(f"{name} (works on PyTorch models; this one is ONNX)")
            elif method.trains and not has_train:
                left_out.append(f"{name} (trains, and the data has no train split)")
            else:
                slots.setdefault(slot, []).append(name)
    return slots, left_out


def _choices(slots: dict[str, list[str]], slot: str) -> list[str]:
    # With one slot, "none" would only waste trials on the baseline itself.
    return slots[slot] if len(slots) == 1 else [NONE, *slots[slot]]


def sample_plan(trial, slots: dict[str, list[str]], space, recovery=None, student=None,
                unlabeled: str | None = None) -> Plan | None:
    """Optuna define-by-run: for each slot in order, a method (or none), then that method's own config.
    ``unlabeled`` (a sentences file) goes to every method whose config reads one (distillation students)."""
    import dataclasses

    from sizewise.compress.registry import get_method

    steps = []
    for slot, _families in SLOTS:
        if slot not in slots:
            continue
        name = trial.suggest_categorical(slot, _choices(slots, slot))
        if name == NONE:
            continue
        method = get_method(name)
        train = student if method.trains else (recovery if slot != "deploy" else None)
        config = method.search(trial, space)
        if unlabeled and "unlabeled" in {f.name for f in dataclasses.fields(config)}:
            config = dataclasses.replace(config, unlabeled=unlabeled)
        steps.append(Step(name, config, train))
    return Plan(tuple(steps), name=f"trial {trial.number}") if steps else None


class _Middle:
    """Stands in for an Optuna trial to read a method's search space at its middle: the initial design's values."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def _keep(self, name: str, value: Any) -> Any:
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False):
        if log:
            return self._keep(name, math.sqrt(low * high))
        if step:
            return self._keep(name, round(low + round((high - low) / step / 2) * step, 10))
        return self._keep(name, (low + high) / 2)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False):
        return self._keep(name, low + (high - low) // step // 2 * step)

    def suggest_categorical(self, name: str, choices):
        return self._keep(name, list(choices)[len(choices) // 2])


def initial_design(slots: dict[str, list[str]], space, trials: int) -> list[dict[str, Any]]:
    """The first trials, enqueued: every method of the last slot alone first (no training: seconds each, and often
    the answer, so a time budget never runs out before them), then every structure method at the middle of its space
    with a last-slot method (cycled), then weight sharing alone. Structure picks that bring a family not tried yet
    come before the rest, so each selected family is tried at least once; the design fills at most half the trials
    beyond that."""
    from sizewise.compress.registry import get_method

    deploy, structure = slots.get("deploy", []), slots.get("structure", [])
    cheap = [{"deploy": d} for d in deploy]
    picks = [{"structure": s, **({"deploy": deploy[i % len(deploy)]} if deploy else {})}
             for i, s in enumerate(structure)]
    picks += [{"cluster": c} for c in slots.get("cluster", [])]
    first, later, seen = [], [], {get_method(d).family for d in deploy}
    for pick in picks:
        families = {get_method(name).family for name in pick.values()}
        (later if families <= seen else first).append(pick)
        seen |= families
    design = []
    for pick in cheap + first + later:
        params: dict[str, Any] = {slot: pick.get(slot, NONE) for slot in slots}
        for name in pick.values():
            middle = _Middle()
            get_method(name).search(middle, space)
            params.update(middle.params)
        design.append(params)
    return design[:min(trials, max(len(cheap) + len(first), trials // 2))]


def stepped(params: dict[str, Any], distributions: dict, method: str, direction: int) -> dict[str, Any] | None:
    """A trial's ``params`` with ``method``'s strength (its registered ``stronger`` parameters) moved one step:
    ``direction`` +1 removes more, -1 keeps more. None when every such parameter is already at the end of its range.
    The search's line search along a structure method: after a trial that met the budget it tries one step
    stronger, after a near miss one step milder, keeping the rest of the plan (the deploy step) as it was."""
    from sizewise.compress.registry import get_method

    moved = dict(params)
    for name, sign in get_method(method).stronger.items():
        if name in params and name in distributions:
            value = _step(distributions[name], params[name], sign * direction)
            if value is not None:
                moved[name] = value
    return moved if moved != params else None


def _step(distribution, value, sign: int):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):  # ordered numbers (a student's width)
        order = sorted(distribution.choices)
        i = order.index(value) + sign
        return order[i] if 0 <= i < len(order) else None
    if isinstance(distribution, IntDistribution):
        moved = value + sign * distribution.step
        return moved if distribution.low <= moved <= distribution.high else None
    if isinstance(distribution, FloatDistribution):
        # a quarter of the range, on the grid: a sparsity's 0.05 grid would take a dozen trials to cross it
        span = (distribution.high - distribution.low) / 4
        if distribution.step:
            span = max(distribution.step, round(span / distribution.step) * distribution.step)
        moved = round(min(max(value + sign * span, distribution.low), distribution.high), 10)
        return moved if moved != value else None
    return None


# -- running ----------------------------------------------------------------------------------------------------------

class ProxyStop(Exception):
    def __init__(self, value: float, examples: int):
        super().__init__(f"proxy {value} on {examples} examples")
        self.value, self.examples = value, examples


def proxy_slack(ctx: TrialContext) -> float:
    """Points of the metric that subset noise alone can move on the proxy subset: two examples' worth of accuracy, or
    one Spearman point."""
    return 200 / ctx.proxy_examples if ctx.metric == "accuracy" else 1.0


class ProxyCheck:
    """Multi-fidelity: a candidate already far outside the budget on the first ``proxy_examples`` validation examples
    is stopped before its full evaluation and (slow) measurement.

    The executor scores every finished step on that subset (``RunOptions.eval_limit``) and hands the finished steps
    to this check before the final measurement (``RunOptions.before_final``); raising there stops the run. Slack:
    twice the budget plus two examples' worth of accuracy (or one Spearman point), so subset noise alone does not
    stop a good candidate.
    """

    def __init__(self, ctx: TrialContext):
        self.ctx = ctx

    def __call__(self, records) -> None:
        from sizewise.core.budget import quality_drop

        ctx = self.ctx
        proxy = records[-1].metrics.get(ctx.metric) if records else None
        if proxy is None:
            return
        if quality_drop(ctx.metric, ctx.baseline_proxy_metric, proxy) > 2 * ctx.allowed_drop_points + proxy_slack(ctx):
            raise ProxyStop(proxy, ctx.proxy_examples)


GATE_EXAMPLES = 128  # validation examples the output error before recovery is measured on


class RecoveryStop(Exception):
    def __init__(self, method: str, error: float, ceiling: float, trial: int):
        super().__init__(f"{method}: output error {error} >= {ceiling} of trial {trial}")
        self.method, self.error, self.ceiling, self.trial = method, error, ceiling, trial


class RecoveryGate:
    """Multi-fidelity before training: the cheapest signal a search has is how far a step moved the model's outputs
    (:func:`sizewise.tasks.evaluate.output_error` against the baseline on the first ``GATE_EXAMPLES`` validation
    examples), measured when the step's recovery training is about to start. Every recovered step records it; a
    candidate whose outputs moved at least as far as those of a candidate of the same method that still missed the
    budget after its recovery (by more than the proxy's noise) is stopped before its recovery is paid for.

    The rule assumes that, within one method on one model with the same recovery, more damage does not recover better:
    it learns its thresholds from this search's own failures, so it never stops anything before one has failed. A
    step whose outputs cannot be compared with the baseline's (a new head, another width) is not gated."""

    def __init__(self, ctx: TrialContext):
        self.ctx = ctx

    def __call__(self, method: str, model, teacher, data) -> dict[str, Any] | None:
        from sizewise.core.errors import SizewiseError
        from sizewise.tasks.evaluate import output_error

        try:
            error = output_error(model, teacher, data, split=data.decision_split, limit=GATE_EXAMPLES)
        except (SizewiseError, ValueError, RuntimeError):  # outputs of another shape or task: no comparison
            return None
        ceiling = self.ctx.recovery_ceilings.get(method) if self.ctx.proxy_may_stop else None
        if ceiling is not None and error >= ceiling[0]:
            raise RecoveryStop(method, error, *ceiling)
        return {"output_error": error, "examples": min(GATE_EXAMPLES, len(data.split(data.decision_split)))}


def recoveries_of(folder: Path, ctx: TrialContext) -> list[dict[str, Any]]:
    """Each recovered step of a trial: its method, its output error before recovery, and its drop after recovery on
    the proxy subset (read from the trial's steps.json, written as each step finished)."""
    import json

    from sizewise.core.budget import quality_drop

    log = folder / "steps.json"
    if not log.is_file():
        return []
    found = []
    for step in json.loads(log.read_text(encoding="utf-8"))["steps"]:
        check, score = step["details"].get("before_recovery"), step["metrics"].get(ctx.metric)
        if check and score is not None:
            found.append({"method": step["method"], "output_error": check["output_error"],
                          "drop_points": quality_drop(ctx.metric, ctx.baseline_proxy_metric, score)})
    return found


def recovery_ceilings(outcomes: list[TrialOutcome], ctx: TrialContext) -> dict[str, tuple[float, int]]:
    """For each method, the smallest output error of a recovered step that still missed the budget on the proxy
    subset by more than its noise: a later candidate of that method with outputs moved this far is not recovered."""
    ceilings: dict[str, tuple[float, int]] = {}
    for o in outcomes:
        for r in o.recoveries:
            if r["drop_points"] <= ctx.allowed_drop_points + proxy_slack(ctx):
                continue
            if r["method"] not in ceilings or r["output_error"] < ceilings[r["method"]][0]:
                ceilings[r["method"]] = (r["output_error"], o.number)
    return ceilings


def trial_data(spec: str, finetune_samples: int | None):
    """The dataset a trial sees: with its validation split (carved the same way every time), and its train split cut
    to ``finetune_samples`` examples drawn from it (``Split.sample``) if asked."""
    from sizewise.data import load_dataset
    from sizewise.data.dataset import carve_validation

    dataset = carve_validation(load_dataset(spec))
    if finetune_samples and "train" in dataset.splits:
        dataset = dataclasses.replace(dataset, splits={**dataset.splits,
                                                       "train": dataset.split("train").sample(finetune_samples)})
    return dataset


def run_trial(job: TrialJob, ctx: TrialContext) -> TrialOutcome:
    """Everything heavy happens here; an exception becomes a failed outcome, its traceback in error.txt."""
    import torch

    from sizewise.core.budget import points
    from sizewise.measure import MeasureConfig
    from sizewise.models.loader import load
    from sizewise.pipeline.executor import RunOptions, run
    from sizewise.pipeline.results import objectives_of

    started = time.perf_counter()
    plan_dict = None if job.plan is None else job.plan.to_dict()
    description = "no compression" if job.plan is None else job.plan.describe()
    if job.plan is None:
        return TrialOutcome(job.number, None, description, "pruned", message="every slot sampled 'none': the "
                                                                              "baseline itself, nothing to run")
    folder = Path(ctx.out) / "trials" / f"{job.number:04d}"
    try:
        # seeded by the plan, not the trial number: a trial a kill interrupted runs again under another number and
        # must draw the same random numbers, so a resumed search equals an uninterrupted one
        torch.manual_seed(ctx.seed + int(job.plan.fingerprint()[:8], 16))
        if folder.exists():  # a trial number runs once per study: this is left from a killed or discarded one
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        # The baseline was measured on validation with these same settings when the search began; the executor
        # takes a before.json it finds as that measurement instead of timing the baseline again in every trial.
        shutil.copyfile(Path(ctx.baseline_dir) / VALIDATION_CARD, folder / "before.json")
        dataset = trial_data(ctx.data, ctx.finetune_samples)
        baseline = load(ctx.baseline_dir)
        check = ProxyCheck(ctx) if ctx.proxy_may_stop else None
        result = run(baseline, job.plan, dataset, folder, RunOptions(
            measure=MeasureConfig(**ctx.measure), final_split="validation", eval_limit=ctx.proxy_examples,
            kind="shrink-trial", command=f"shrink trial {job.number}: {description}",
            before_final=check, keep_step_models=False, recovery_teacher=ctx.recovery_teacher,
            before_recovery=RecoveryGate(ctx)))
        card = result.after.to_dict()
        proxy = next((s.metrics[ctx.metric] for s in reversed(result.steps) if ctx.metric in s.metrics), None)
        return TrialOutcome(job.number, plan_dict, description, "complete", metric=card["metrics"][ctx.metric],
                            proxy_metric=proxy, objectives=objectives_of(card), artifact=str(folder),
                            seconds=time.perf_counter() - started, recoveries=recoveries_of(folder, ctx))
    except ProxyStop as stop:
        return TrialOutcome(job.number, plan_dict, description, "pruned", proxy_metric=stop.value,
                            artifact=str(folder), seconds=time.perf_counter() - started,
                            message=f"stopped early: proxy {ctx.metric} {points(ctx.metric, stop.value):.2f} on "
                                    f"{stop.examples} validation examples (baseline "
                                    f"{points(ctx.metric, ctx.baseline_proxy_metric):.2f})",
                            recoveries=recoveries_of(folder, ctx))
    except RecoveryStop as stop:
        return TrialOutcome(job.number, plan_dict, description, "pruned", artifact=str(folder),
                            seconds=time.perf_counter() - started,
                            message=f"stopped before recovery: {stop.method} moved the outputs by {stop.error:.3f} "
                                    f"(relative, on {GATE_EXAMPLES} validation examples), as far as or further "
                                    f"than trial {stop.trial}'s {stop.ceiling:.3f}, which missed the budget after "
                                    "its recovery")
    except Exception as exc:  # a failed candidate is a result too: recorded, and the search goes on
        error = folder / "error.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            error.write_text(f"trial {job.number}: {description}\n\n{traceback.format_exc()}", encoding="utf-8")
            where = f" (traceback: {error})"
        except OSError:
            error, where = None, ""
        return TrialOutcome(job.number, plan_dict, description, "failed", seconds=time.perf_counter() - started,
                            message=f"{type(exc).__name__}: {str(exc)[:300]}{where}",
                            error=None if error is None else str(error))
