"""The search's cheapest signal: how far a step moved the outputs, measured before its recovery training is paid for."""

import shutil

import pytest

import sizewise
from sizewise.compress.prune import ChannelPrune
from sizewise.compress.prune.structured import channel
from sizewise.compress.registry import StepContext
from sizewise.data.dataset import carve_validation
from sizewise.pipeline import trial
from sizewise.pipeline.executor import RunOptions, run
from sizewise.pipeline.plan import Plan, Step
from sizewise.tasks.evaluate import evaluate, output_error

FIT = sizewise.TrainConfig(epochs=1, seed=0)
QUICK = {"latency_seconds": 0.05, "measure_memory": False, "throughput_sweep": (1,), "threads": 1}


def _pruned(directory, ratio):
    loaded = sizewise.load(str(directory))
    channel(loaded, ChannelPrune(ratio, importance="l1"), StepContext())
    return loaded


def test_output_error_is_zero_for_the_same_model_and_grows_with_the_damage(trained_digits_dir, digits):
    data = carve_validation(digits)
    base = sizewise.load(str(trained_digits_dir))
    same = output_error(sizewise.load(str(trained_digits_dir)), base, data, split="validation")
    light = output_error(_pruned(trained_digits_dir, 0.2), base, data, split="validation")
    heavy = output_error(_pruned(trained_digits_dir, 0.8), base, data, split="validation")
    assert same == 0.0 and 0.0 < light < heavy


def test_the_executor_asks_the_gate_once_when_recovery_starts_and_records_its_answer(trained_digits_dir, digits,
                                                                                   tmp_path):
    calls = []

    def gate(method, changed, teacher, data):
        calls.append((method, sum(p.numel() for p in changed.module.parameters()),
                      sum(p.numel() for p in teacher.module.parameters()), data.decision_split))
        return {"output_error": 0.25}

    base = sizewise.load(str(trained_digits_dir))
    result = run(base, Plan((Step.of(ChannelPrune(0.5), FIT),)), digits, tmp_path / "run",
                 RunOptions(measure=sizewise.MeasureConfig(**QUICK), before_recovery=gate))
    assert len(calls) == 1
    method, changed_params, teacher_params, split = calls[0]
    assert method == "channel" and changed_params < teacher_params and split == "validation"  # after the pruning
    assert result.steps[0].details["before_recovery"] == {"output_error": 0.25}


def test_a_gate_that_raises_stops_the_run_before_any_training(trained_digits_dir, digits, tmp_path):
    class Stop(Exception):
        pass

    def gate(*_args):
        raise Stop

    base = sizewise.load(str(trained_digits_dir))
    with pytest.raises(Stop):
        run(base, Plan((Step.of(ChannelPrune(0.5), FIT),)), digits, tmp_path / "run",
            RunOptions(measure=sizewise.MeasureConfig(**QUICK), before_recovery=gate))
    assert not list((tmp_path / "run").rglob("checkpoint*")) and not (tmp_path / "run" / "steps.json").exists()


def _ctx(baseline, tmp_path, **fields):
    return trial.TrialContext(str(baseline), "digits", str(tmp_path / "out"), "accuracy", fields.pop("proxy", 0.9),
                              1.0, 100, QUICK, 0, **fields)


def test_ceilings_come_from_recovered_steps_that_still_missed_the_budget_beyond_the_proxy_noise(tmp_path):
    ctx = _ctx("b", tmp_path)  # budget 1 point, proxy of 100 examples: 2 points of noise
    outcome = lambda n, *recoveries: trial.TrialOutcome(n, None, "x", "pruned", recoveries=list(recoveries))  # noqa
    rec = lambda method, error, drop: {"method": method, "output_error": error, "drop_points": drop}  # noqa
    outcomes = [outcome(1, rec("channel", 0.9, 8.0)), outcome(2, rec("channel", 0.6, 5.0)),
                outcome(3, rec("channel", 0.3, 2.5)),  # missed the budget, but within the proxy's noise
                outcome(4, rec("channel", 0.2, 0.1), rec("factorize", 0.7, 9.0))]
    assert trial.recovery_ceilings(outcomes, ctx) == {"channel": (0.6, 2), "factorize": (0.7, 4)}
    assert trial.recovery_ceilings([outcome(5, rec("channel", 0.9, 0.5))], ctx) == {}


@pytest.fixture
def baseline(trained_digits_dir, digits, tmp_path):
    """OUT/baseline as a search leaves it: the model and its card on the validation split."""
    folder = tmp_path / "baseline"
    shutil.copytree(trained_digits_dir, folder)
    data = carve_validation(digits)
    card = sizewise.measure(sizewise.load(str(folder)), sizewise.MeasureConfig(**QUICK, split="validation"),
                            dataset=data)
    card.to_json(folder / trial.VALIDATION_CARD)
    return folder, evaluate(sizewise.load(str(folder)), data, split="validation", limit=100)["accuracy"]


def test_a_candidate_moved_as_far_as_a_failed_one_is_stopped_before_its_recovery(baseline, tmp_path):
    folder, proxy = baseline
    plan = Plan((Step.of(ChannelPrune(0.5), FIT),))
    free = trial.run_trial(trial.TrialJob(1, plan), _ctx(folder, tmp_path, proxy=proxy))
    assert free.state == "complete" and [r["method"] for r in free.recoveries] == ["channel"]
    error = free.recoveries[0]["output_error"]
    assert error > 0

    below = _ctx(folder, tmp_path, proxy=proxy, recovery_ceilings={"channel": (error * 1.5, 7)})
    assert trial.run_trial(trial.TrialJob(2, plan), below).state == "complete"

    at = _ctx(folder, tmp_path, proxy=proxy, recovery_ceilings={"channel": (error, 7)})
    stopped = trial.run_trial(trial.TrialJob(3, plan), at)
    assert stopped.state == "pruned" and "stopped before recovery" in stopped.message and "trial 7" in stopped.message
    assert not list((tmp_path / "out" / "trials" / "0003").rglob("checkpoint*"))

    # before any trial completed, nothing is stopped (a search always has a model to hand back)
    first = _ctx(folder, tmp_path, proxy=proxy, recovery_ceilings={"channel": (error, 7)}, proxy_may_stop=False)
    assert trial.run_trial(trial.TrialJob(4, plan), first).state == "complete"
