"""``sizewise.shrink``: from a model and an accuracy budget to a verified smaller/faster model.

Optuna (NSGA-II, multi-objective: metric up, objective down) proposes candidates; each is pruned/fine-tuned/quantized,
checked on a quarter of the held-out data (multi-fidelity: bad ones stop there), then evaluated in full and measured on
the deployment runtime. Trials live in an Optuna RDB (SQLite in OUT by default) and their artifacts in OUT/trials, both
written as each finishes, so a search killed at any point resumes with the same OUT and loses no finished trial.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from sizewise.core.errors import ConfigError, SizewiseError
from sizewise.core.optional import require
from sizewise.core.serialize import to_dict, write_json_atomic
from sizewise.pipeline.config import ShrinkConfig
from sizewise.pipeline.executors import make_executor
from sizewise.pipeline.results import ShrinkResults, baseline_candidate, candidate_from, choose, pareto_front
from sizewise.pipeline.trial import TrialContext, TrialOutcome, TrialPlan, initial_design, sample_plan

STUDY = "sizewise-shrink"


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out '{out}': {exc.strerror or exc}",
                          hint="choose a directory you can write to") from None


def _baseline(model: str, data: str, out: Path, config: ShrinkConfig, progress):
    """The model as given, saved as OUT/baseline, with its cards on torch eager and on the runtime."""
    import sizewise
    from sizewise.measure import MeasureConfig
    from sizewise.tasks import check_compatible

    baseline_dir = out / "baseline"
    loaded = sizewise.load(model)
    dataset = sizewise.load_dataset(data)
    check_compatible(loaded, dataset)
    if not (baseline_dir / "model").exists():
        sizewise.save_model(loaded, baseline_dir / "model")
    cards_path = baseline_dir / "cards.json"
    if cards_path.exists():  # resuming: the baseline was measured already, and the trials were compared to it
        import json

        return dataset, json.loads(cards_path.read_text())
    mc = MeasureConfig(batch_size=config.batch_size, seq_len=config.seq_len, threads=config.threads,
                       latency_seconds=config.latency_seconds, measure_memory=False)
    progress("measuring the baseline on torch eager")
    torch_card = sizewise.measure(sizewise.load(str(baseline_dir)), mc, dataset=dataset)
    progress(f"measuring the baseline on {config.runtime}")
    runtime_card = sizewise.measure(sizewise.load(str(baseline_dir)), dataclasses.replace(mc, runtime=config.runtime),
                                    dataset=dataset)
    cards = {"torch_fp32": torch_card.to_dict(), "runtime_fp32": runtime_card.to_dict()}
    write_json_atomic(cards_path, cards)
    return dataset, cards


def _baseline_sensitivity(out: Path, dataset, runtime: str, progress) -> list[dict]:
    """Per-layer int8 sensitivity of the baseline (relative output error), for the report; cached for resumes."""
    import json
    import tempfile

    cache = out / "baseline" / "sensitivity.json"
    if cache.exists():
        return json.loads(cache.read_text())
    if runtime != "onnxruntime":
        return []
    import sizewise
    from sizewise.compress.quantize import Int8Dynamic
    from sizewise.compress.quantize.calibration import calibration_batches
    from sizewise.compress.quantize.onnx_backend import quantizable_nodes
    from sizewise.compress.quantize.sensitivity import layer_sensitivity
    from sizewise.models.convert import to_onnx

    loaded = sizewise.load(str(out / "baseline"))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = to_onnx(loaded, Path(tmp) / "fp32.onnx")
        batches = calibration_batches(loaded, dataset, 32)
        rows = layer_sensitivity(fp32, Int8Dynamic(), batches, quantizable_nodes(fp32, Int8Dynamic()), None, None,
                                 progress)
    data = to_dict(rows)
    write_json_atomic(cache, data)
    return data


def _baseline_proxy(out: Path, dataset, metric: str, fraction: float) -> float:
    import sizewise
    from sizewise.pipeline.trial import proxy_size

    n = proxy_size(len(dataset.split()), fraction)
    return sizewise.evaluate(sizewise.load(str(out / "baseline")), dataset, limit=n)[metric]


def _outcome_from_trial(frozen) -> TrialOutcome | None:
    attrs = frozen.user_attrs
    if "outcome" not in attrs:
        return None
    raw = attrs["outcome"]
    return TrialOutcome(raw["number"], TrialPlan(**raw["plan"]), raw["state"], raw.get("metric"),
                        raw.get("proxy_metric"), raw.get("objectives", {}), None, raw.get("artifact"),
                        raw.get("seconds", 0.0), raw.get("message", ""))


def _load_card(artifact: str | None) -> dict | None:
    import json

    if artifact and (Path(artifact) / "card.json").exists():
        return json.loads((Path(artifact) / "card.json").read_text())
    return None


def write_results(out: Path, study, config: ShrinkConfig, ctx: TrialContext, cards: dict, command: str,
                  sensitivity: list[dict], interrupted: bool = False) -> ShrinkResults:
    from sizewise.measure.environment import describe_environment

    outcomes = [o for t in study.get_trials(deepcopy=False) if (o := _outcome_from_trial(t)) is not None]
    complete = [o for o in outcomes if o.state == "complete"]
    candidates = [candidate_from(o, ctx.metric, ctx.baseline_metric, config.max_drop, config.objective,
                                 _load_card(o.artifact)) for o in complete]
    chosen, verdict = choose(candidates)
    results = ShrinkResults(
        command=command, config=to_dict(config), metric=ctx.metric, objective=config.objective, baseline=cards,
        trials=[to_dict(o) for o in outcomes],
        pareto=[dataclasses.replace(c, card=None) for c in pareto_front(
            [*candidates, baseline_candidate(cards["runtime_fp32"], ctx.metric, config.objective,
                                             str(out / "baseline"))])],
        chosen=to_dict(chosen) if chosen else None, verdict=verdict,
        environment=describe_environment(config.threads), sensitivity=sensitivity, interrupted=interrupted)
    write_json_atomic(out / "results.json", results)
    return results


def shrink(model: str, data: str, out: str | Path, config: ShrinkConfig | None = None, progress=None,
           on_trial=None, command: str | None = None, finalize=None) -> ShrinkResults:
    """Search for the best model within ``config.max_drop``. Re-running with the same ``out`` resumes.

    ``finalize(out, results)`` runs once the search stops, also when interrupted (the report layer renders the report
    there: ``sizewise.shrink`` wires it in; this layer does not import the one above it).
    """
    optuna = require("optuna", "search", "the shrink search")
    from optuna.trial import TrialState

    config = config or ShrinkConfig()
    step = progress or (lambda _msg: None)
    out = Path(out)
    _check_writable(out)
    command = command or " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])
    dataset, cards = _baseline(model, data, out, config, step)
    metric = next(k for k in cards["runtime_fp32"]["metrics"] if k != "examples")
    baseline_metric = cards["runtime_fp32"]["metrics"][metric]
    measure_settings = {"batch_size": config.batch_size, "seq_len": config.seq_len, "threads": config.threads,
                        "runtime": config.runtime, "latency_seconds": config.latency_seconds,
                        "measure_memory": False, "throughput_sweep": (config.batch_size,)}
    ctx = TrialContext(str(out / "baseline"), data, str(out), config.runtime, metric, baseline_metric,
                       _baseline_proxy(out, dataset, metric, config.proxy_fraction),
                       config.max_drop.allowed_drop(metric, baseline_metric), config.finetune_epochs,
                       config.finetune_lr, config.finetune_samples, config.proxy_fraction, measure_settings,
                       config.seed)
    sensitivity = _baseline_sensitivity(out, dataset, config.runtime, step)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = config.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    # Multi-objective TPE after a small designed start: with a dozen trials a random start repeats the same few
    # categorical plans, so the first trials cover each pruner x quantizer once at a middle setting.
    study = optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True,
                                directions=["maximize", "minimize"],
                                sampler=optuna.samplers.TPESampler(seed=config.seed, multivariate=True,
                                                                   n_startup_trials=min(6, config.trials)))
    if not study.trials:
        for params in initial_design(config.methods, dataset.task)[:max(1, config.trials // 2)]:
            study.enqueue_trial(params)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)  # killed mid-trial last time: its work was not kept
    executor = make_executor(config.executor, config.ray_address)
    started, interrupted = time.monotonic(), False
    try:
        while True:
            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            if done >= config.trials:
                break
            if config.time_budget_s and time.monotonic() - started > config.time_budget_s:
                step("time budget spent")
                break
            batch = [study.ask() for _ in range(min(config.parallel, config.trials - done))]
            plans = [sample_plan(t, config.methods, dataset.task) for t in batch]
            for plan in plans:
                step(f"trial {plan.number}: {plan.describe()}")
            any_complete = bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            trial_ctx = dataclasses.replace(ctx, proxy_may_stop=any_complete)
            for trial, outcome in zip(batch, executor.run([(p, trial_ctx) for p in plans]), strict=True):
                record = to_dict(dataclasses.replace(outcome, card=None))
                trial.set_user_attr("outcome", record)
                if outcome.state == "complete":
                    study.tell(trial, [outcome.metric, outcome.objectives[config.objective]])
                elif outcome.state == "pruned":
                    study.tell(trial, state=TrialState.PRUNED)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                write_results(out, study, config, ctx, cards, command, sensitivity)
                if on_trial:
                    on_trial(outcome)
    except KeyboardInterrupt:
        interrupted = True
        for running in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(running.number, state=TrialState.FAIL)
    finally:
        executor.close()
    results = write_results(out, study, config, ctx, cards, command, sensitivity, interrupted=interrupted)
    if finalize:
        finalize(out, results)
    if results.chosen is None and not interrupted:
        raise SizewiseError("no trial finished, so there is no model to hand back",
                            hint="see results.json for each trial's error; try --trials more or other --methods")
    return results
