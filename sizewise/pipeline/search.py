"""``sizewise.shrink``: from a model and an accuracy budget to a verified smaller/faster model.

Optuna (multi-objective TPE: metric up, objective down) samples plans from the registry's search spaces
(:mod:`sizewise.pipeline.trial`), after a designed start (each family once, at the middle of its range) and a line
search along each structure method's strength (one step milder after a near miss, stronger after a hit); the one
executor runs each in ``OUT/trials/NNNN`` and scores it on the validation split. Multi-fidelity, cheapest signal
first: a step whose outputs moved at least as far from the baseline's as those of a recovered candidate of the same
method that still failed is stopped before its recovery training (the output error on 128 validation examples); a
candidate far outside the budget on a quarter of the validation split stops before its full evaluation; a method
that failed three times, none of them a near miss, is not proposed again. The Pareto front and the choice are made
on validation; then the chosen model and the baseline are measured once on the test split, side by side, for the
reported numbers. Trials live in an Optuna RDB (SQLite in OUT by default) and their artifacts in OUT/trials, both
written as each finishes, so a search killed at any point resumes with the same OUT and loses no finished trial.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizewise.core.errors import ConfigError, SizewiseError
from sizewise.core.optional import require
from sizewise.core.serialize import to_dict, write_json_atomic
from sizewise.pipeline.config import SLOTS, ShrinkConfig, resolve_methods
from sizewise.pipeline.executors import make_executor
from sizewise.pipeline.repeats import same_plan_run, tell_repeat, tell_skipped
from sizewise.pipeline.results import (
    Chosen,
    ShrinkResults,
    baseline_candidate,
    candidate_from,
    choose,
    deciding_isas,
    dominates,
    headline,
    pareto_front,
    score,
    verdict_on_test,
)
from sizewise.pipeline.trial import (
    NONE,
    VALIDATION_CARD,
    TrialContext,
    TrialJob,
    TrialOutcome,
    initial_design,
    recovery_ceilings,
    sample_plan,
    search_space,
    slot_methods,
    stepped,
    trial_data,
)

STUDY = "sizewise-shrink"
# why a trial ran (a user attribute of the Optuna trial, and TrialOutcome.origin): queued ones say so when queued
ORIGIN, DESIGNED, SAMPLED, RERUN = "origin", "designed start", "sampler", " (run again after an interruption)"
HOPELESS_AFTER = 3  # a method tried this often with no candidate in budget is not run again in this search
# ... unless one of its trials missed the budget by less than this many times the allowed drop: a near miss says a
# milder setting of the same method may hold it (MiniLM: a layers:4 student + int8 missed a 0.87-point budget by 0.03)
NEAR_MISS = 2.0
MAX_SKIPS_IN_A_ROW = 25  # the sampler keeps drawing hopeless plans: what is left is not worth proposing
# failed trials do not count towards --trials; a search whose every trial fails (a broken install, a model no method
# can handle) stops after this many in a row instead of sampling forever
MAX_FAILURES_IN_A_ROW = 5


WORKER = "worker"  # user attr of a running trial: "host:pid" of the process running it


def _this_worker() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_alive(worker: str | None) -> bool:
    """Whether the process named ``host:pid`` still runs. A worker on another host cannot be asked, so its trial is
    taken as alive (resume it from that host); a trial without a worker is from a search killed before it said."""
    import socket

    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that pid: not ours, but alive
        return True
    return not _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    """A killed child its parent has not reaped yet still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def is_near_miss(candidate, allowed: float) -> bool:
    """A complete trial that missed the budget by less than ``NEAR_MISS`` times the allowed drop."""
    return not candidate.meets_budget and candidate.drop_points <= NEAR_MISS * allowed


def hopeless_methods(outcomes: list[TrialOutcome], in_budget: set[int],
                     near_miss: set[int] = frozenset()) -> dict[str, int]:
    """Methods that appeared in ``HOPELESS_AFTER`` or more scored trials (complete or stopped early) and never in one
    that met the budget or came near it (``near_miss``: complete trials that missed it by less than ``NEAR_MISS``
    times the allowed drop): the search stops proposing them (multi-fidelity across trials, not only within one). A
    trial that failed with an error says nothing about the budget (a group size that does not divide a layer, say)
    and does not count. Returns each such method with how many trials it failed in."""
    tried: dict[str, int] = {}
    good: set[str] = set()
    for o in outcomes:
        if o.state not in ("complete", "pruned") or not o.plan:
            continue
        names = {step["method"] for step in o.plan["steps"]}
        for name in names:
            tried[name] = tried.get(name, 0) + 1
        if o.state == "complete" and (o.number in in_budget or o.number in near_miss):
            good |= names
    return {name: n for name, n in tried.items() if n >= HOPELESS_AFTER and name not in good}


@dataclass
class _Search:
    """What every write of results.json needs, fixed when the search starts."""

    out: Path
    config: ShrinkConfig
    command: str
    metric: str
    baseline: dict[str, Any]  # the baseline's card on the validation split (on the runtime)
    sensitivity: list[dict] = field(default_factory=list)
    slots: dict[str, list[str]] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)

    @property
    def baseline_metric(self) -> float:
        return self.baseline["metrics"][self.metric]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out '{out}': {exc.strerror or exc}",
                          hint="choose a directory you can write to") from None


def _measure_settings(config: ShrinkConfig) -> dict[str, Any]:
    from sizewise.measure.llm import LLMConfig

    # a causal LM's candidates are compared on decode steps at batch 1 (3 timed generations each); the machine's
    # read bandwidth, a roofline for the card, is not measured again for every trial
    return {"batch_size": config.batch_size, "seq_len": config.seq_len, "threads": config.threads,
            "runtime": config.runtime, "latency_seconds": config.latency_seconds, "measure_memory": False,
            "throughput_sweep": (config.batch_size,), "llm": LLMConfig(runs=3, bandwidth=False)}


def _baseline(model: str, data: str, out: Path, config: ShrinkConfig, progress):
    """The model as given, saved as OUT/baseline, and its card on the runtime on the validation split (what every
    trial is compared to; measured once, kept for resumes)."""
    from sizewise.measure import MeasureConfig, measure
    from sizewise.models.artifact import save_model
    from sizewise.models.loader import load
    from sizewise.tasks import check_compatible

    baseline_dir = out / "baseline"
    loaded = load(model)
    dataset = trial_data(data, None)
    check_compatible(loaded, dataset)
    if "validation" not in dataset.splits:
        raise ConfigError(f"dataset '{dataset.name}' has no validation split and no train split to carve one from",
                          hint="shrink chooses on validation and reports on test: give data with a train split")
    if not (baseline_dir / "model").exists():
        save_model(loaded, baseline_dir / "model")
    card_path = baseline_dir / VALIDATION_CARD
    if not card_path.exists():
        progress(f"measuring the baseline on {config.runtime} (validation split)")
        card = measure(load(str(baseline_dir)), MeasureConfig(**_measure_settings(config), split="validation"),
                       dataset=dataset)
        card.to_json(card_path)
    return loaded, dataset, json.loads(card_path.read_text(encoding="utf-8"))


def _baseline_sensitivity(out: Path, dataset, runtime: str, progress) -> list[dict]:
    """Per-layer int8 sensitivity of the baseline (relative output error), for the report; cached for resumes."""
    import tempfile

    cache = out / "baseline" / "sensitivity.json"
    if cache.exists():
        return json.loads(cache.read_text())
    if runtime != "onnxruntime":
        return []
    from sizewise.compress.quantize import Int8Dynamic
    from sizewise.compress.quantize.calibration import calibration_batches
    from sizewise.compress.quantize.onnx_backend import quantizable_nodes
    from sizewise.compress.quantize.sensitivity import layer_sensitivity
    from sizewise.models.convert import to_onnx
    from sizewise.models.loader import load

    loaded = load(str(out / "baseline"))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = to_onnx(loaded, Path(tmp) / "fp32.onnx")
        batches = calibration_batches(loaded, dataset, 32)
        rows = layer_sensitivity(fp32, Int8Dynamic(), batches, quantizable_nodes(fp32, Int8Dynamic()), None, None,
                                 progress)
    data = to_dict(rows)
    write_json_atomic(cache, data)
    return data


def _outcome_from_trial(frozen) -> TrialOutcome | None:
    """A finished trial's outcome. A trial still RUNNING has none, even when its outcome was stored: a process killed
    between storing the outcome and telling the study leaves exactly that, and the trial is then run again."""
    from optuna.trial import TrialState

    raw = frozen.user_attrs.get("outcome")
    if raw is None or frozen.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
        return None
    if frozen.state == TrialState.FAIL and raw.get("state") != "failed":
        return None  # stored, then killed before the study was told: failed as stale, and its plan ran again
    return TrialOutcome(**raw)


def _trial_card(artifact: str | None) -> dict | None:
    """The card a trial's run record holds for its result (on validation)."""
    path = Path(artifact) / "card.json" if artifact else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("after")


def _candidates(search: _Search, outcomes: list[TrialOutcome]):
    config = search.config
    return [candidate_from(o, search.metric, search.baseline_metric, config.max_drop, config.objective,
                           _trial_card(o.artifact)) for o in outcomes if o.state == "complete"]


def write_results(search: _Search, outcomes: list[TrialOutcome], test_cards: dict[str, Any] | None = None,
                  interrupted: bool = False) -> ShrinkResults:
    """results.json: every trial, the front and the choice (validation); with ``test_cards`` (the baseline's and the
    chosen model's cards on test), the reported result."""
    from sizewise.measure.environment import describe_environment

    config, metric = search.config, search.metric
    candidates = _candidates(search, outcomes)
    best, verdict = choose(candidates)
    environment = describe_environment(config.threads)
    chosen, speedups, gained, hardware = None, {}, "", {}
    tested = (test_cards or {}).get("cards", {})
    if best is not None:
        test = None
        plan = next((o.plan for o in outcomes if o.number == best.trial), None)
        hardware = deciding_isas(plan, environment.get("cpu_flags", {}))
        if test_cards is not None:
            base, card = tested["runtime_fp32"], tested["chosen"]
            test = score("test", metric, base["metrics"][metric], card["metrics"][metric], config.max_drop, card)
            verdict = f"{verdict}; {verdict_on_test(metric, test)}"
            speedups = test_cards["speedups"]
            gained = headline(config.objective, config.runtime, speedups, base, card)
        on_validation = score("validation", metric, search.baseline_metric, best.metric, config.max_drop)
        chosen = Chosen(best.trial, best.description, best.artifact, best.objective, on_validation, test,
                        meets_budget=(test or on_validation).meets_budget)
    baseline = {"validation": search.baseline, "torch_fp32": tested.get("torch_fp32"),
                "runtime_fp32": tested.get("runtime_fp32")}
    uncompressed = baseline_candidate(search.baseline, metric, config.objective, str(search.out / "baseline"))
    front = pareto_front([*candidates, uncompressed])
    if best is not None and dominates(uncompressed, best):
        verdict = (f"{verdict}; but the uncompressed model is at least as accurate and measurably better on "
                   f"{config.objective} (validation): no candidate beat it")
    results = ShrinkResults(
        command=search.command, config=to_dict(config), metric=metric, objective=config.objective, baseline=baseline,
        trials=[to_dict(o) for o in outcomes], pareto=[dataclasses.replace(c, card=None) for c in front],
        chosen=chosen, verdict=verdict, environment=environment,
        sensitivity=search.sensitivity, interrupted=interrupted, methods=search.slots, left_out=search.left_out,
        speedups=speedups, headline=gained, hardware=hardware)
    write_json_atomic(search.out / "results.json", results)
    return results


def _test_cards(search: _Search, dataset, artifact: str, progress) -> dict[str, Any]:
    """The reported numbers: the baseline (torch eager and the runtime) and the chosen model, measured one after
    the other on the test split, with the same settings; the only time a search looks at test. Then the speed-ups:
    the chosen model timed interleaved with each baseline (cards minutes apart would compare two loads, not two
    models)."""
    from sizewise.measure import MeasureConfig, measure
    from sizewise.measure.compare import CompareConfig, compare
    from sizewise.models.loader import load

    config = search.config
    from sizewise.measure.llm import LLMConfig

    # split None: the data's reported split, test; a causal LM's reported cards get the full LLM section (roofline)
    mc = MeasureConfig(**{**_measure_settings(config), "llm": LLMConfig()})
    baseline_dir = str(search.out / "baseline")
    progress("scoring the baseline and the chosen model on the test split")
    cards = {"torch_fp32": measure(load(baseline_dir), dataclasses.replace(mc, runtime="torch"),
                                   dataset=dataset).to_dict(),
             "runtime_fp32": measure(load(baseline_dir), mc, dataset=dataset).to_dict(),
             "chosen": measure(load(artifact), mc, dataset=dataset).to_dict()}
    progress(f"timing the chosen model interleaved with the fp32 baseline ({config.compare_seconds:g} s each)")
    chosen = load(artifact)
    speedups = {}
    for name, runtime in (("runtime_fp32", config.runtime), ("torch_fp32", "torch")):
        cc = CompareConfig(batch_size=config.batch_size, seq_len=config.seq_len, threads=config.threads,
                           runtime_a=runtime, runtime_b=config.runtime, seconds=config.compare_seconds)
        speedups[name] = compare(load(baseline_dir), chosen, cc).to_dict()
    return {"cards": cards, "speedups": speedups}


def _queue_again(study, trial) -> None:
    """Queue the plan of a trial that did not finish, to run next. A trial killed right after it was asked for
    holds no sampled parameters yet, only the ones it was queued with (``fixed_params``): those are its plan. A
    sampled trial killed before sampling anything has no plan to repeat; the search samples a new one."""
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    if params:
        origin = trial.user_attrs.get(ORIGIN) or SAMPLED
        again = origin if origin.endswith(RERUN) else f"{origin}{RERUN}"
        study.enqueue_trial(params, user_attrs={ORIGIN: again})


def line_search(study, candidates, allowed: float) -> list[tuple[dict, str]]:
    """The plans one step along a structure method's strength from each complete trial, in trial order: one step
    stronger after a trial that met the budget, one step milder after a near miss (less than ``NEAR_MISS`` times
    the allowed drop). Computed from the study every time (so a resumed search queues the same), and queued after
    the initial design and before the sampler's own picks: random picks rarely land next to the one plan that came
    close (MiniLM: a layers:3 student + int8 misses by little; layers:4 + int8 is the plan that holds the budget).
    Each comes with why it is run, for the trials table."""
    from sizewise.compress.registry import get_method

    verdicts = {c.trial: c for c in candidates}
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    queued = []
    for number, c in sorted(verdicts.items()):
        trial = trials.get(number)
        if trial is None:
            continue
        direction = 1 if c.meets_budget else -1 if is_near_miss(c, allowed) else 0
        for slot, _families in SLOTS:  # a method with no declared strength (quantization) has no line to search
            name = trial.params.get(slot)
            if direction and name not in (None, NONE) and get_method(name).stronger:
                params = stepped(trial.params, trial.distributions, name, direction)
                if params is not None:
                    why = ("held the budget" if c.meets_budget else
                           f"missed the budget by {c.drop_points - allowed:.2f} points")
                    queued.append((params, f"line search: {name} one step {'stronger' if direction > 0 else 'milder'}"
                                           f" than trial {number}, which {why}"))
    return queued


def _queue_design(study, design: list[tuple[dict, str]], wanted: int) -> None:
    """Queue the designed start's next picks, only as many as the next ask takes (not all at once): a trial a kill
    interrupted is queued again when the search resumes, and Optuna runs queued trials oldest first, so with the
    design queued lazily that trial runs next, as it did before the kill, and a resumed search runs its trials in
    the uninterrupted order (what the validation proxy may stop depends on that order). A pick already in the study
    (run, failed or queued by another worker) is not queued again."""
    import optuna

    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    for params, origin in design:
        if waiting >= wanted:
            return
        before = len(study.get_trials(deepcopy=False))
        study.enqueue_trial(params, user_attrs={ORIGIN: origin}, skip_if_exists=True)
        waiting += len(study.get_trials(deepcopy=False)) - before


def _write_final(search: _Search, outcomes, dataset, progress, interrupted: bool, finalize) -> ShrinkResults:
    """Measure the choice on test, then write results.json (and the report) from the trials the study holds *then*.

    Workers sharing a study and an OUT each end here, and a worker stops while another's trial still runs: the
    file written last must hold every trial. So the outcomes are re-read under a lock on OUT right before writing;
    if another worker's trial has changed the choice meanwhile, that model is measured instead and the check repeats
    (the test cards always belong to the model the file names)."""
    from filelock import FileLock

    best, _ = choose(_candidates(search, outcomes()))
    while True:
        test_cards = None
        if best is not None and not interrupted:
            test_cards = _test_cards(search, dataset, best.artifact, progress)
        with FileLock(str(search.out / ".results.lock")):
            final = outcomes()
            latest, _ = choose(_candidates(search, final))
            if interrupted or _trial_of(latest) == _trial_of(best):
                results = write_results(search, final, test_cards, interrupted=interrupted)
                if finalize:
                    finalize(search.out, results)
                return results
        progress(f"another worker's trial {latest.trial} changed the choice: measuring it on test")
        best = latest


def _trial_of(candidate) -> int | None:
    return None if candidate is None else candidate.trial


def _training(config: ShrinkConfig, has_train: bool):
    """Recovery training for structure and sharing steps, and a student's distillation training."""
    from sizewise.train import TrainConfig

    recovery = None
    if config.finetune_epochs and has_train:
        recovery = TrainConfig(epochs=config.finetune_epochs, lr=config.finetune_lr, seed=config.seed)
    student = TrainConfig(epochs=config.student_epochs, lr=config.distill_lr or config.finetune_lr, seed=config.seed)
    return recovery, student


def shrink(model: str, data: str, out: str | Path, config: ShrinkConfig | None = None, progress=None,
           on_trial=None, command: str | None = None, finalize=None) -> ShrinkResults:
    """Search for the best model within ``config.max_drop``. Re-running with the same ``out`` resumes.

    ``finalize(out, results)`` runs once the search stops, also when interrupted (the report layer renders the report
    there: ``sizewise.shrink`` wires it in; this layer does not import the one above it).
    """
    optuna = require("optuna", "search", "the shrink search")
    from optuna.trial import TrialState

    from sizewise.core.metrics import primary_metric
    from sizewise.models.loader import load
    from sizewise.tasks import evaluate

    config = config or ShrinkConfig()
    step = progress or (lambda _msg: None)
    out = Path(out)
    _check_writable(out)
    command = command or " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])
    loaded, dataset, baseline_card = _baseline(model, data, out, config, step)
    metric = primary_metric(baseline_card["metrics"])
    if metric is None:
        raise ConfigError(f"the baseline has no metric on '{data}', so there is no budget to hold",
                          hint="shrink needs labelled data for the model's task")
    space = search_space(loaded, config.runtime, config.objective)
    del loaded  # trials load their own copy of OUT/baseline
    has_train = "train" in dataset.splits
    slots, left_out = slot_methods(resolve_methods(config.methods), space, has_train)
    for reason in left_out:
        step(f"left out: {reason}")
    if not slots:
        raise ConfigError(f"none of --methods {','.join(config.methods)} applies to this model",
                          hint="; ".join(left_out) or "choose other methods")
    recovery, student = _training(config, has_train)
    # absolute: a trial may run in another working directory (a Ray worker)
    unlabeled = str(Path(config.distill_unlabeled).resolve()) if config.distill_unlabeled else None
    search = _Search(out, config, command, metric, baseline_card, slots=slots, left_out=left_out)
    proxy_n = max(1, int(len(dataset.split("validation")) * config.proxy_fraction))
    proxy_base = evaluate(load(str(out / "baseline")), dataset, split="validation", limit=proxy_n)[metric]
    allowed = config.max_drop.allowed_drop(metric, search.baseline_metric)  # points of the metric the budget allows
    ctx = TrialContext(str(out / "baseline"), data, str(out), metric, proxy_base, allowed, proxy_n,
                       _measure_settings(config), config.seed, config.finetune_samples,
                       recovery_teacher=config.recovery_teacher)
    if config.sensitivity:
        search.sensitivity = _baseline_sensitivity(out, dataset, config.runtime, step)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = config.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    # Multi-objective TPE after a small designed start: with a dozen trials a random start repeats the same few
    # categorical plans, so the first trials try each selected family once at the middle of its space.
    # Workers sharing a study (--storage) would propose the same plans from the same seed: each gets its own.
    sampler_seed = config.seed if config.storage is None else config.seed + os.getpid()
    study = optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True,
                                directions=["maximize", "minimize"],
                                sampler=optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True,
                                                                   n_startup_trials=min(6, config.trials)))
    if any("outcome" in t.user_attrs and "description" not in t.user_attrs["outcome"] for t in study.trials):
        raise ConfigError(f"{out} holds a search made by an older sizewise", hint="use a new --out")
    design = initial_design(slots, space, config.trials)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _worker_alive(stale.user_attrs.get(WORKER)):
            continue  # another worker is running it right now
        # killed mid-trial: its work was not kept, so it is failed and its plan queued to run again
        study.tell(stale.number, state=TrialState.FAIL)
        _queue_again(study, stale)

    def outcomes() -> list[TrialOutcome]:
        return [o for t in study.get_trials(deepcopy=False) if (o := _outcome_from_trial(t)) is not None]

    def hopeless() -> dict[str, int]:
        final = outcomes()
        candidates = _candidates(search, final)
        return hopeless_methods(final, {c.trial for c in candidates if c.meets_budget},
                                {c.trial for c in candidates if is_near_miss(c, allowed)})

    executor = make_executor(config.executor, config.ray_address)
    started, interrupted, skips, failures = time.monotonic(), False, 0, 0
    try:
        while True:
            # trials other workers are running count too, or workers sharing a study overshoot --trials together
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            done = sum(1 for o in outcomes() if o.state in ("complete", "pruned")) + running
            if done >= config.trials:
                break
            if config.time_budget_s and time.monotonic() - started > config.time_budget_s:
                step("time budget spent")
                break
            if failures >= MAX_FAILURES_IN_A_ROW:
                step(f"stopping: the last {failures} trials failed (see their error.txt)")
                break
            wanted = min(config.parallel, config.trials - done)
            _queue_design(study, [(p, DESIGNED) for p in design]
                          + line_search(study, _candidates(search, outcomes()), allowed), wanted)
            batch = [study.ask() for _ in range(wanted)]
            for trial in batch:
                trial.set_user_attr(WORKER, _this_worker())
            jobs = [TrialJob(t.number, sample_plan(t, slots, space, recovery, student, unlabeled)) for t in batch]
            dropped, finished = hopeless(), outcomes()
            keep = []
            for trial, job in zip(batch, jobs, strict=True):
                earlier = same_plan_run(job, finished)
                if earlier is not None:
                    tell_repeat(study, trial, job, earlier, trial.user_attrs.get(ORIGIN, SAMPLED))
                    skips += 1
                    continue
                bad = sorted(m.method for m in (job.plan.steps if job.plan else ()) if m.method in dropped)
                if not bad:
                    keep.append((trial, job))
                    continue
                tell_skipped(study, trial, job, f"not run: {', '.join(bad)} failed the budget in "
                             f"{', '.join(str(dropped[b]) for b in bad)} trial(s) already",
                             trial.user_attrs.get(ORIGIN, SAMPLED))  # told pruned: the sampler learns to avoid it
                skips += 1
            if skips >= MAX_SKIPS_IN_A_ROW:
                step("stopping: the sampler keeps proposing plans that already ran"
                     + (f" or methods that failed here ({', '.join(sorted(dropped))})" if dropped else ""))
                break
            if not keep:
                continue
            skips = 0
            batch, jobs = [t for t, _ in keep], [j for _, j in keep]
            for job in jobs:
                step(f"trial {job.number}: {'no compression' if job.plan is None else job.plan.describe()}")
            any_complete = bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
            trial_ctx = dataclasses.replace(ctx, proxy_may_stop=any_complete,
                                            recovery_ceilings=recovery_ceilings(outcomes(), ctx))
            for trial, outcome in zip(batch, executor.run([(job, trial_ctx) for job in jobs]), strict=True):
                outcome = dataclasses.replace(outcome, origin=trial.user_attrs.get(ORIGIN, SAMPLED))
                trial.set_user_attr("outcome", to_dict(outcome))
                if outcome.state == "complete":
                    study.tell(trial, [outcome.metric, outcome.objectives[config.objective]])
                elif outcome.state == "pruned":
                    study.tell(trial, state=TrialState.PRUNED)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                    step(f"trial {outcome.number} failed: {outcome.message}")
                failures = failures + 1 if outcome.state == "failed" else 0
                write_results(search, outcomes())
                if on_trial:
                    on_trial(outcome)
    except KeyboardInterrupt:
        interrupted = True
        for running in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if running.user_attrs.get(WORKER) == _this_worker():  # ours; other workers' trials are theirs
                study.tell(running.number, state=TrialState.FAIL)
                _queue_again(study, running)
    finally:
        executor.close()
    results = _write_final(search, outcomes, dataset, step, interrupted, finalize)
    if results.chosen is None and not interrupted:
        raise SizewiseError("no trial finished, so there is no model to hand back",
                            hint="see results.json for each trial's error (OUT/trials/NNNN/error.txt holds the "
                                 "traceback); try --trials more or other --methods")
    return results
