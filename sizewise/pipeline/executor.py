"""The one executor: any plan, on any model, with the same evidence and the same resume.

1. Validate every step before anything runs (registered method, its config, data where it needs data, no PyTorch
   step after a step that made an ONNX graph).
2. Measure the input once (``before``, and reference cards on other runtimes when asked), on the test split.
3. Run the steps in order. Each step sees the data *without its test split* (its decisions use validation), trains
   with checkpoints under ``OUT/steps/NN-method/work`` (a killed training step resumes mid-way), and must hand back a
   model that still runs, with outputs of the right shape and finite values. Its model is saved under
   ``OUT/steps/NN-method/model``, reloaded from there, scored on validation, and logged in ``OUT/steps.json``; a
   re-run with the same ``--out`` continues after the last finished step.
4. Save ``OUT/model`` (in the encoding a step asked for), reload it, measure it the same way on the test split
   (``after``), and write the run record ``OUT/card.json`` (:mod:`sizewise.pipeline.record`).

Measuring the *reloaded* artifact is deliberate: it proves the saved file is the model that was evaluated, and its
bytes are what a user would ship.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from sizewise.compress.registry import StepContext, StepOutput, get_method
from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError, SizewiseError
from sizewise.core.progress import Progress, silent
from sizewise.core.serialize import to_dict, write_json_atomic
from sizewise.data.dataset import Dataset, carve_validation
from sizewise.measure import MeasureConfig, ModelCard, measure
from sizewise.models.artifact import load_model_dir, save_model
from sizewise.models.loaded import LoadedModel
from sizewise.pipeline.plan import Plan
from sizewise.pipeline.record import SCHEMA, Verdict, verdict_for
from sizewise.tasks.evaluate import check_compatible, evaluate, first_output

STEPS_LOG = "steps.json"
PLAN_FILE = "plan.json"


class BrokenResultError(SizewiseError):
    pass


@dataclass(frozen=True)
class RunOptions:
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    budget: Budget | None = None
    references: tuple[str, ...] = ()  # more runtimes to measure the input on (e.g. "torch" beside onnxruntime)
    final_split: str | None = None  # None = the data's reported split (test); a search's trials use validation
    eval_limit: int | None = None  # decisions and step scores on N validation examples (Split.sample)
    kind: str = "plan"  # the command this run is, for the record
    command: str = ""
    progress: Progress = silent
    # called with the finished steps before the result is saved and measured; raising stops the run there (a search
    # stops a candidate whose validation score is already hopeless before paying for its measurement)
    before_final: Callable[[list[StepRecord]], None] | None = None
    # a finished run keeps every step's model (OUT/steps/NN-method/model) unless told not to: a search's trials need
    # only their result, and a MiniLM-sized trial would otherwise store the model once per step more
    keep_step_models: bool = True
    # recovery training in a step learns from the plan's input model as well (knowledge distillation): a search does
    # this by default, since the baseline every candidate starts from is the best teacher it has
    recovery_teacher: bool = False
    # called as (method name, the model about to be recovered, the plan's input model, the step's data) when a step's
    # training begins; what it returns goes into the step's details as "before_recovery", and raising stops the run
    # there (a search stops a candidate whose outputs moved further than a recovered one that still failed)
    before_recovery: Callable[[str, LoadedModel, LoadedModel, Dataset], dict[str, Any] | None] | None = None


@dataclass(frozen=True)
class StepRecord:
    index: int
    method: str
    description: str
    config: dict[str, Any]
    train: dict[str, Any] | None
    details: dict[str, Any]
    seconds: float
    metrics: dict[str, Any]  # on the validation split
    model_dir: str
    invariants: list[str]
    encoding: str | None


@dataclass(frozen=True)
class RunResult:
    plan: Plan
    before: ModelCard
    after: ModelCard
    steps: list[StepRecord]
    verdict: Verdict
    model: LoadedModel  # the result, reloaded from model_dir
    model_dir: Path
    record: dict[str, Any]
    references: dict[str, ModelCard] = field(default_factory=dict)
    resumed_from: int = 0

    @property
    def details(self) -> dict[str, Any]:
        """The last step's details (a one-step plan's)."""
        return self.steps[-1].details if self.steps else {}


def validate(model: LoadedModel, plan: Plan, data: Dataset | None) -> None:
    """Every check that can fail before any time is spent."""
    onnx_from = None if not model.is_onnx else 0
    for i, step in enumerate(plan.steps, 1):
        method = get_method(step.method)
        where = f"step {i} ({step.method})"
        if not method.matches(step.config):
            raise ConfigError(f"{where}: its config is a {type(step.config).__name__}, not the method's "
                              f"{method.config.__name__}{f' with {method.preset}' if method.preset else ''}")
        if method.needs_data and data is None:
            raise ConfigError(f"{where} needs data", hint="pass --data (or data= in Python)")
        if onnx_from is not None and not method.accepts_onnx:
            made = "the input is" if onnx_from == 0 else f"step {onnx_from} made it"
            raise ConfigError(f"{where} works on PyTorch models, but {made} an ONNX graph",
                              hint="put onnxruntime quantization and export steps last")
        if onnx_from is None and method.makes_onnx(step.config):
            onnx_from = i


def _example_output(model: LoadedModel) -> torch.Tensor:
    with torch.inference_mode():
        return first_output(model.module(**model.example_inputs(2)))


def _guard(model: LoadedModel, expected: torch.Tensor, step: str, family: str) -> None:
    """A step must never hand back a model that does not run, or runs to the wrong shape or to NaN."""
    try:
        got = _example_output(model)
    except Exception as exc:
        raise BrokenResultError(f"after {step} the model no longer runs: {type(exc).__name__}: {exc}",
                                hint="this is a sizewise bug; please report it with the model reference") from exc
    # a student may have another hidden width (a sentence embedding of another size), and a fine-tune may put a new
    # head on an encoder (hidden states -> class logits): only the batch must agree
    same = got.shape[0] == expected.shape[0] if family in ("distill", "finetune") else got.shape == expected.shape
    if not same or not torch.isfinite(got.float()).all():
        raise BrokenResultError(f"after {step} the model gives outputs of shape {tuple(got.shape)} (expected "
                                f"{tuple(expected.shape)}) or non-finite values; nothing was saved")


def _reload(directory: Path, like: LoadedModel) -> LoadedModel:
    loaded = load_model_dir(directory, str(directory.parent), template=like)
    loaded.reference = like.reference if like.reference.startswith("<") else str(directory.parent)
    loaded.module.eval()
    return loaded


def _measurable(model: LoadedModel, data: Dataset | None) -> Dataset | None:
    """The data to score ``model`` on, or None when its outputs do not fit the data (a head comes later)."""
    if data is None:
        return None
    try:
        check_compatible(model, data)
    except SizewiseError:
        return None
    return data


def _claim(out: Path, plan: Plan, model: LoadedModel) -> list[StepRecord]:
    """The steps an earlier run of this same plan on this same model finished in ``out`` (none for a new run).

    ``OUT/plan.json`` is written before anything else, so that a run killed before its first step still marks the
    folder: a different plan or model there is refused instead of reusing its before-card."""
    mine = {"fingerprint": plan.fingerprint(), "model": model.reference, "plan": plan.name or plan.describe()}
    claim = out / PLAN_FILE
    if claim.is_file():
        theirs = json.loads(claim.read_text(encoding="utf-8"))
        if (theirs.get("fingerprint"), theirs.get("model")) != (mine["fingerprint"], mine["model"]):
            raise ConfigError(f"{out} holds a run of a different plan or model ({theirs.get('plan', '?')} on "
                              f"{theirs.get('model', '?')})", hint="use a new --out, or delete the folder to start over")
    elif (out / STEPS_LOG).is_file() or (out / "card.json").is_file():
        raise ConfigError(f"{out} holds a run this version of sizewise did not start",
                          hint="use a new --out, or delete the folder to start over")
    else:
        write_json_atomic(claim, mine)
    log = out / STEPS_LOG
    return [StepRecord(**r) for r in json.loads(log.read_text(encoding="utf-8"))["steps"]] if log.is_file() else []


def run(model: LoadedModel, plan: Plan, data: Dataset | None, out: str | Path,
        options: RunOptions | None = None) -> RunResult:
    """Run ``plan`` on ``model`` (not changed: steps work on copies), writing everything under ``out``."""
    options = options or RunOptions()
    say = options.progress
    out = Path(out)
    if data is not None:
        data = carve_validation(data)  # a dataset made by hand gets its validation split here
        check_data = _measurable(model, data)
        if check_data is None and not any(get_method(s.method).family == "finetune" for s in plan.steps):
            check_compatible(model, data)  # raises the error that says what does not fit
    validate(model, plan, data)
    step_data = data.without_test() if data is not None else None
    split = options.final_split or (data.heldout if data is not None else None)
    mc = replace(options.measure, split=split)
    out.mkdir(parents=True, exist_ok=True)
    done = _claim(out, plan, model)

    before = _card(out / "before.json", model, mc, data, say, "measuring the model before")
    references = {rt: _card(out / f"before-{rt}.json", model, replace(mc, runtime=rt), data, say,
                            f"measuring the model before on {rt}")
                  for rt in options.references if rt != mc.runtime and not model.is_onnx}
    expected = _example_output(model)
    current = copy.copy(model)
    current.module = copy.deepcopy(model.module)  # the caller's model stays as it was
    invariants: set[str] = set()
    encoding: str | None = model.metadata.get("encoding")
    if done:
        say(f"resuming after step {len(done)} ({done[-1].description})")
        current = _reload(Path(done[-1].model_dir), current)
        invariants, encoding = set(done[-1].invariants), done[-1].encoding
    records = list(done)
    for index, step in enumerate(plan.steps):
        if index < len(done):
            continue
        method = get_method(step.method)
        folder = out / "steps" / f"{index + 1:02d}-{step.method}"
        say(f"step {index + 1}/{len(plan.steps)}: {step.describe()}")
        started = time.perf_counter()
        ctx = StepContext(data=step_data, train=step.train, workdir=folder / "work", invariants=frozenset(invariants),
                          teacher=model, budget=options.budget, progress=say, eval_limit=options.eval_limit,
                          recovery_teacher=options.recovery_teacher)
        if options.before_recovery is not None and step_data is not None:
            ctx.before_recovery = lambda changed, name=step.method: options.before_recovery(name, changed, model,
                                                                                             step_data)
        output = method.apply(current, step.config, ctx)
        output = output if isinstance(output, StepOutput) else StepOutput(current, output or {})
        if ctx.learned_from_teacher:
            output.details = {**output.details, "recovery_teacher": "the plan's input model (KD, T=2, alpha=0.5)"}
        if ctx.recovery_check:
            output.details = {**output.details, "before_recovery": ctx.recovery_check}
        result = output.model
        result.module.eval()
        _guard(result, expected, f"step {index + 1} ({step.method})", method.family)
        invariants = (invariants - set(method.breaks)) | set(method.leaves)
        if method.makes_onnx(step.config):
            invariants, encoding = set(), None
        encoding = method.encoding or encoding
        model_dir = save_model(result, folder / "model")
        current = _reload(model_dir, result)
        scored = _measurable(current, step_data)
        metrics = {} if scored is None else {**evaluate(current, scored, split=scored.decision_split,
                                                        limit=options.eval_limit), "split": scored.decision_split}
        records.append(StepRecord(index, step.method, step.describe(), to_dict(step.config), to_dict(step.train),
                                  to_dict(output.details), time.perf_counter() - started, metrics, str(model_dir),
                                  sorted(invariants), encoding))
        write_json_atomic(out / STEPS_LOG, {"plan": plan.name or plan.describe(), "fingerprint": plan.fingerprint(),
                                            "steps": [dataclasses.asdict(r) for r in records]})
        shutil.rmtree(folder / "work", ignore_errors=True)  # checkpoints of a finished step are not needed again

    if options.before_final is not None:
        options.before_final(records)
    say("saving and measuring the result")
    model_dir = save_model(current, out / "model", encoding=encoding)
    final = _reload(model_dir, current)
    after = measure(final, mc, dataset=_measurable(final, data), progress=say)
    distilled = any(get_method(s.method).family == "distill" for s in plan.steps)
    roles = {"before": "teacher", "after": "student"} if distilled else {"before": "input", "after": "result"}
    verdict = verdict_for(before.metrics, after.metrics, options.budget, roles["before"])
    record = {
        "schema": SCHEMA, "kind": options.kind, "command": options.command, "model": model.reference,
        "plan": plan.to_dict() | {"fingerprint": plan.fingerprint(), "description": plan.describe()},
        "data": None if data is None else {"name": data.name, "source": data.source, "notes": data.notes,
                                           **data.describe_splits()},
        "steps": [dataclasses.asdict(r) for r in records], "roles": roles,
        "before": before.to_dict(), "after": after.to_dict(),
        "references": {rt: card.to_dict() for rt, card in references.items()},
        "budget": None if options.budget is None else str(options.budget), "verdict": to_dict(verdict),
        "model_dir": str(model_dir), "environment": after.environment, "resumed_from": len(done)}
    write_json_atomic(out / "card.json", record)
    if not options.keep_step_models:
        for step_record in records:
            shutil.rmtree(step_record.model_dir, ignore_errors=True)
    return RunResult(plan, before, after, records, verdict, final, model_dir, record, references, len(done))


def _card(path: Path, model: LoadedModel, mc: MeasureConfig, data: Dataset | None, say: Progress,
          doing: str) -> ModelCard:
    if path.is_file():  # resuming: the input was measured by the first run
        return ModelCard.from_json(path)
    say(doing)
    card = measure(model, mc, dataset=_measurable(model, data), progress=say)
    card.to_json(path)
    return card
