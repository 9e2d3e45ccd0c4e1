import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from html import escape
from pathlib import Path

import pytest

import sizewise
from sizewise.compress.registry import METHODS, SearchSpace, get_method, list_methods
from sizewise.core.budget import Budget
from sizewise.core.errors import ConfigError, DataError
from sizewise.pipeline import ShrinkConfig
from sizewise.pipeline.results import (
    Candidate,
    baseline_candidate,
    choose,
    deciding_isas,
    format_objective,
    headline,
    pareto_front,
)
from sizewise.report.shrink_report import shrink

FAST = dict(trials=3, finetune_epochs=1, latency_seconds=0.05, threads=1, methods=("channel", "int8-dynamic"),
            compare_seconds=0.5)
IMAGES = SearchSpace("image-classification", "tensor", "onnxruntime", "latency")


@pytest.fixture(scope="module")
def search(trained_digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shrink")
    results = shrink(str(trained_digits_dir), "digits", out, ShrinkConfig(**FAST), command="test")
    return out, results


def _families(trial: dict) -> set[str]:
    return {get_method(step["method"]).family for step in (trial["plan"] or {}).get("steps", [])}


def test_search_end_to_end_chooses_on_validation_and_reports_on_test(search):
    out, results = search
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == "sizewise.shrink/2" and len(data["trials"]) == 3
    assert data["selection_split"] == "validation" and data["reported_split"] == "test"
    assert data["methods"] == {"structure": ["channel"], "deploy": ["int8-dynamic"]}
    chosen = data["chosen"]
    assert chosen["validation"]["split"] == "validation" and chosen["test"]["split"] == "test"
    assert chosen["test"]["card"]["metrics"]["split"] == "test"
    assert data["baseline"]["validation"]["metrics"]["split"] == "validation"
    assert data["baseline"]["torch_fp32"]["metrics"]["split"] == "test"
    assert data["baseline"]["torch_fp32"]["metrics"]["accuracy"] > 0.8
    trial = next(t for t in data["trials"] if t["number"] == chosen["trial"])
    assert trial["metric"] == chosen["validation"]["metric"]  # the trial was scored on validation
    record = json.loads((Path(trial["artifact"]) / "card.json").read_text())
    assert record["schema"] == "sizewise.run/1" and record["after"]["metrics"]["split"] == "validation"
    assert data["pareto"] and all("trial" in p for p in data["pareto"])
    assert data["sensitivity"] and data["sensitivity"][0]["output_error"] >= data["sensitivity"][-1]["output_error"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and "<script" not in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "chosen on the validation split" in html and "Before and after (test split)" in html
    assert "Pareto front" in (out / "report.md").read_text()
    # every trial says why it ran: the designed start first (int8 alone, then channel + int8), then the line search
    # from a trial of a structure method or the sampler
    origins = [t["origin"] for t in data["trials"]]
    assert origins[:2] == ["designed start"] * 2, origins
    assert all(o == "sampler" or o.startswith("line search: channel") for o in origins[2:]), origins
    assert "designed start" in (out / "report.md").read_text() and "designed start" in html
    # the speed-ups are interleaved timings on test, and the headline claims only what they show
    assert set(data["speedups"]) == {"runtime_fp32", "torch_fp32"}
    same = data["speedups"]["runtime_fp32"]
    assert same["runtime_a"] == same["runtime_b"] == "onnxruntime" and same["rounds"] >= 20
    assert data["headline"] and ("faster than fp32" in data["headline"]) == (same["outcome"] == "faster")
    assert data["hardware"]["kernels"] and escape(data["headline"]) in html
    # a recovery step learned from the baseline (KD), and the step record says so
    structured = [t for t in data["trials"] if t["state"] == "complete" and "prune" in _families(t)]
    for t in structured:
        steps = json.loads((Path(t["artifact"]) / "card.json").read_text())["steps"]
        assert "recovery_teacher" in steps[0]["details"]
    # the chosen artifact loads and is the evaluated model, on both splits
    model, digits = sizewise.load(chosen["artifact"]), sizewise.load_dataset("digits")
    assert sizewise.evaluate(model, digits, split="validation")["accuracy"] == chosen["validation"]["metric"]
    assert sizewise.evaluate(model, digits)["accuracy"] == chosen["test"]["metric"]


def test_rerunning_a_finished_search_adds_nothing(search, trained_digits_dir):
    out, first = search
    again = shrink(str(trained_digits_dir), "digits", out, ShrinkConfig(**FAST), command="test")
    assert [t["number"] for t in again.trials] == [t["number"] for t in first.trials]


def test_report_command_rerenders(search):
    from typer.testing import CliRunner

    from sizewise.cli.app import app

    out, _ = search
    (out / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists()


def test_report_renders_in_headless_chromium(search, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    out, _ = search
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom",
         (out / "report.html").resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<svg" in proc.stdout and 'class="point chosen"' in proc.stdout
    console_errors = [line for line in proc.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert console_errors == []


def test_pareto_and_choice_rules():
    a = Candidate(1, "a", metric=0.97, objective=1.0, drop_points=0.5, meets_budget=True, artifact=None)
    b = Candidate(2, "b", metric=0.98, objective=2.0, drop_points=-0.5, meets_budget=True, artifact=None)
    c = Candidate(3, "c", metric=0.96, objective=3.0, drop_points=1.5, meets_budget=False, artifact=None)
    assert [x.trial for x in pareto_front([a, b, c])] == [1, 2]
    assert choose([a, b, c])[0].trial == 1
    closest, verdict = choose([c, Candidate(4, "d", 0.90, 0.5, 7.0, False, None)])
    assert closest.trial == 3 and "NO trial met the budget" in verdict
    # equal accuracy, latencies inside each other's noise: neither is better, both stay on the front
    noisy_fast = Candidate(5, "e", 0.98, 0.98, -0.5, True, None, objective_ci=(0.90, 1.06))
    other = Candidate(6, "f", 0.98, 1.00, -0.5, True, None, objective_ci=(0.95, 1.05))
    assert {x.trial for x in pareto_front([noisy_fast, other])} == {5, 6}
    # more accurate and not measurably slower: that one dominates
    less_accurate = Candidate(9, "i", 0.97, 0.98, 0.5, True, None, objective_ci=(0.90, 1.06))
    assert [x.trial for x in pareto_front([less_accurate, other])] == [6]
    clearly_fast = Candidate(7, "g", 0.97, 0.50, 0.5, True, None, objective_ci=(0.48, 0.52))
    slow = Candidate(8, "h", 0.96, 1.00, 1.5, True, None, objective_ci=(0.95, 1.05))
    assert [x.trial for x in pareto_front([clearly_fast, slow])] == [7]


def test_within_noise_of_the_fastest_the_more_accurate_then_the_smaller_is_chosen():
    fastest = Candidate(1, "fp16", 0.970, 1.00, 0.5, True, None, objective_ci=(0.95, 1.05), size_bytes=500)
    accurate = Candidate(2, "int8", 0.975, 1.03, 0.0, True, None, objective_ci=(0.98, 1.08), size_bytes=300)
    best, verdict = choose([fastest, accurate])
    assert best.trial == 2 and "within the measured noise" in verdict and "more accurate" in verdict
    smaller = dataclasses.replace(accurate, trial=3, metric=0.970, size_bytes=250)
    assert choose([fastest, smaller])[0].trial == 3  # as accurate, same speed within noise: the smaller
    slow_accurate = Candidate(4, "x", 0.99, 2.0, 0.0, True, None, objective_ci=(1.9, 2.1), size_bytes=100)
    assert choose([fastest, slow_accurate])[0].trial == 1  # measurably slower: accuracy does not buy it back
    exact = [Candidate(5, "a", 0.97, 100.0, 0.5, True, None), Candidate(6, "b", 0.99, 101.0, 0.0, True, None)]
    assert choose(exact)[0].trial == 5  # bytes and FLOPs are exact: one byte less is better


def _comparison(speedup, lo, hi, outcome):
    return {"speedup": speedup, "speedup_ci95": [lo, hi], "outcome": outcome}


def test_the_headline_never_claims_a_speedup_inside_the_noise():
    base = {"size": {"disk_bytes": 4000}, "flops": {"total": 100}}
    chosen = {"size": {"disk_bytes": 1000}, "flops": {"total": 100}}
    noisy = headline("latency", "onnxruntime", {"runtime_fp32": _comparison(1.19, 0.9, 1.5, "none")}, base, chosen)
    assert noisy.startswith("no speed-up beyond noise on onnxruntime") and "4.00x fewer bytes" in noisy
    assert "faster" not in noisy
    real = headline("latency", "onnxruntime", {"runtime_fp32": _comparison(2.016, 1.9, 2.1, "faster"),
                                               "torch_fp32": _comparison(3.5, 3.3, 3.7, "faster")}, base, chosen)
    assert real.startswith("2.01x faster than fp32 on onnxruntime (95% CI 1.90-2.10") and "3.50x torch fp32" in real
    same = headline("latency", "onnxruntime", {"runtime_fp32": _comparison(1.0, 0.95, 1.05, "none")}, base, base)
    assert same.endswith("nothing else gained")


def test_objectives_read_with_units_and_the_deciding_instruction_sets():
    assert format_objective("latency", 0.07431) == "0.0743 ms"
    assert format_objective("size", 4.511e4) == "44.1 KiB"
    assert format_objective("flops", 2.5e6) == "2.5 MFLOP"
    plan = {"steps": [{"method": "channel"}, {"method": "int8-dynamic"}]}
    isas = deciding_isas(plan, {"avx512_vnni": True, "amx_int8": False})
    assert isas["kernels"] == ["int8"] and "avx512_vnni" in isas["present"] and "amx_int8" in isas["absent"]
    assert deciding_isas({"steps": [{"method": "channel"}]}, {"avx2": True})["kernels"] == ["float32"]
    assert deciding_isas({"steps": [{"method": "bf16"}]}, {"amx_bf16": True})["present"] == ["amx_bf16"]


def test_a_method_failing_the_budget_again_and_again_is_dropped():
    from sizewise.pipeline.search import HOPELESS_AFTER, hopeless_methods
    from sizewise.pipeline.trial import TrialOutcome

    def outcome(n, methods, state="complete"):
        return TrialOutcome(n, {"steps": [{"method": m} for m in methods]}, "x", state)

    bad = [outcome(i, ["magnitude", "int8-dynamic"], "pruned") for i in range(HOPELESS_AFTER)]
    good = outcome(10, ["int8-dynamic"])
    assert hopeless_methods([*bad, good], in_budget={10}) == {"magnitude": HOPELESS_AFTER}
    assert hopeless_methods([*bad[:-1], good], in_budget={10}) == {}  # not tried often enough yet
    assert hopeless_methods([*bad, good], in_budget=set()) == {"magnitude": 3, "int8-dynamic": 4}
    # a trial that failed with an error (a config the model cannot take) is no evidence about the budget
    errors = [outcome(20 + i, ["int4-rtn"], "failed") for i in range(HOPELESS_AFTER)]
    assert hopeless_methods([*errors, *bad[:2]], in_budget=set()) == {}
    # a complete trial that missed the budget narrowly keeps its methods proposed: a milder setting may hold it
    near = [outcome(30 + i, ["distill", "int8-dynamic"]) for i in range(HOPELESS_AFTER)]
    assert hopeless_methods(near, in_budget=set()) == {"distill": 3, "int8-dynamic": 3}
    assert hopeless_methods(near, in_budget=set(), near_miss={32}) == {}
    # only a complete trial is a near miss: trial 0 was stopped early by the proxy
    assert hopeless_methods([*bad, good], in_budget=set(), near_miss={0}) == {"magnitude": 3, "int8-dynamic": 4}


def test_the_uncompressed_baseline_is_a_point_of_the_front():
    card = {"metrics": {"accuracy": 0.98}, "latency": {"p50_ms": 2.0, "ci95_median_ms": [1.95, 2.05]},
            "size": {"disk_bytes": 1000}, "energy": {"joules_per_1k": 1.0}, "flops": {"total": 10}}
    base = baseline_candidate(card, "accuracy", "latency", "out/baseline")
    assert base.trial == "baseline" and base.objective == 2.0 and base.objective_ci[0] < 1.95
    faster_less_accurate = Candidate(1, "a", 0.97, 1.0, 1.0, True, None, objective_ci=(0.95, 1.05))
    assert {c.trial for c in pareto_front([faster_less_accurate, base])} == {1, "baseline"}
    as_accurate_and_faster = Candidate(2, "b", 0.98, 1.0, 0.0, True, None, objective_ci=(0.95, 1.05))
    assert [c.trial for c in pareto_front([as_accurate_and_faster, base])] == [2]
    assert choose([faster_less_accurate])[0].trial == 1  # the baseline is a reference, never the answer


def test_a_budget_nothing_meets_returns_the_closest_with_a_verdict(trained_digits_dir, tmp_path, monkeypatch):
    # 99% of every layer's weights removed and no recovery: no candidate can keep the accuracy, so the outcome is
    # certain; the second trial is far outside the budget on the proxy subset and stops there. (Each trial prunes a
    # little differently: a plan that already ran is not run again.)
    from sizewise.compress.prune import MagnitudePrune

    magnitude = get_method("magnitude")
    monkeypatch.setitem(METHODS._items, "magnitude", dataclasses.replace(
        magnitude, search=lambda trial, space: MagnitudePrune(
            trial.suggest_float("magnitude.sparsity", 0.985, 0.995), scope="layer")))
    config = ShrinkConfig(**{**FAST, "methods": ("magnitude",), "trials": 2, "finetune_epochs": 0},
                          max_drop=Budget(0.0, absolute=True))
    results = shrink(str(trained_digits_dir), "digits", tmp_path, config, command="test")
    assert [t["state"] for t in results.trials] == ["complete", "pruned"]
    assert "stopped early: proxy accuracy" in results.trials[1]["message"]
    assert "NO trial met the budget" in results.verdict
    chosen = results.chosen
    assert chosen.trial == 0 and not chosen.validation.meets_budget and chosen.validation.drop_points > 20
    assert chosen.test is not None and not chosen.test.meets_budget and Path(chosen.artifact, "model").is_dir()


def test_every_selected_family_completes_a_trial(trained_digits_dir, tmp_path):
    config = ShrinkConfig(methods=("channel", "distill", "factorize", "int8-dynamic"), trials=8, finetune_epochs=1,
                          finetune_samples=400, latency_seconds=0.02, threads=1, max_drop=Budget(0.3, absolute=False),
                          compare_seconds=0.5)
    results = shrink(str(trained_digits_dir), "digits", tmp_path, config, command="test")
    assert results.methods == {"structure": ["channel", "distill", "factorize"], "deploy": ["int8-dynamic"]}
    done = [t for t in results.trials if t["state"] in ("complete", "pruned")]
    assert len(done) == 8
    covered = set().union(*(_families(t) for t in results.trials if t["state"] == "complete"))
    assert covered >= {"prune", "distill", "factorize", "quantize"}
    distilled = next(t for t in results.trials if "distill" in _families(t))
    assert distilled["plan"]["steps"][0]["train"]["epochs"] == 1  # a student trains; its epochs come from the config


def test_a_plan_that_already_ran_is_not_run_again(trained_digits_dir, tmp_path):
    # one method without parameters: the space holds two plans (fp16, no compression), fewer than --trials
    config = ShrinkConfig(**{**FAST, "methods": ("fp16",), "trials": 4})
    results = shrink(str(trained_digits_dir), "digits", tmp_path, config, command="test")
    ran = [t for t in results.trials if t["state"] in ("complete", "pruned")]
    plans = [json.dumps(t["plan"] and t["plan"]["steps"]) for t in ran]
    assert len(plans) == len(set(plans)) <= 2  # each plan ran once; the search stopped instead of repeating
    assert [t["state"] for t in ran if t["plan"]] == ["complete"]
    repeats = [t for t in results.trials if t["state"] == "skipped"]
    assert repeats
    by_number = {t["number"]: t for t in ran}
    for repeat in repeats:
        earlier = int(repeat["message"].removeprefix("not run: the same plan as trial "))
        assert by_number[earlier]["plan"] == repeat["plan"]  # the repeat records the plan that ran
    assert results.chosen is not None


def test_initial_design_tries_each_family_once_at_the_middle_of_its_space():
    from sizewise.pipeline.trial import initial_design

    slots = {"structure": ["channel", "distill", "factorize"], "deploy": ["int8-dynamic"]}
    design = initial_design(slots, IMAGES, trials=8)
    per_tensor = {"int8-dynamic.per_channel": False}  # onnxruntime's default scales, before per channel is tried
    assert design == [
        {"structure": "none", "deploy": "int8-dynamic", **per_tensor},
        {"structure": "channel", "deploy": "int8-dynamic", "channel.sparsity": 0.4, "channel.round_to": 8, **per_tensor},
        {"structure": "distill", "deploy": "int8-dynamic", "distill.width": 0.5, **per_tensor},
        {"structure": "factorize", "deploy": "int8-dynamic", "factorize.target_params": 0.55, **per_tensor}]
    assert len(initial_design(slots, IMAGES, trials=5)) == 4  # every family once, even past half the trials
    assert len(initial_design(slots, IMAGES, trials=2)) == 2  # but never more than the trials
    # every deploy method alone comes before any plan that trains: seconds each, and a time budget reaches them
    many = {"structure": ["channel"], "deploy": ["int4-weight", "int8-dynamic", "ort-optimize"]}
    order = [(d["structure"], d["deploy"]) for d in initial_design(many, IMAGES, trials=12)]
    assert order[:3] == [("none", "int4-weight"), ("none", "int8-dynamic"), ("none", "ort-optimize")]
    assert order[3][0] == "channel"


def test_strength_steps_one_notch_and_stops_at_the_ends_of_the_range():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from sizewise.pipeline.trial import stepped

    layers = {"structure": "distill", "distill.layers": 3, "deploy": "int8-dynamic", "int8-dynamic.per_channel": True}
    ints = {"distill.layers": IntDistribution(2, 4)}
    # a student keeps more with more layers: milder is one layer more, and the deploy step stays as it was
    assert stepped(layers, ints, "distill", -1) == {**layers, "distill.layers": 4}
    assert stepped(layers, ints, "distill", +1) == {**layers, "distill.layers": 2}
    assert stepped({**layers, "distill.layers": 4}, ints, "distill", -1) is None  # already the mildest
    widths = {"distill.width": CategoricalDistribution([0.25, 0.5, 0.75])}
    assert stepped({"distill.width": 0.75}, widths, "distill", +1) == {"distill.width": 0.5}
    assert stepped({"distill.width": 0.25}, widths, "distill", +1) is None
    # a sparsity removes more as it grows, a quarter of its range at a time, on its grid, clipped to the range
    sparsity = {"channel.sparsity": FloatDistribution(0.1, 0.7, step=0.05)}
    assert stepped({"channel.sparsity": 0.4}, sparsity, "channel", +1) == {"channel.sparsity": 0.55}
    assert stepped({"channel.sparsity": 0.2}, sparsity, "channel", -1) == {"channel.sparsity": 0.1}
    assert stepped({"channel.sparsity": 0.1}, sparsity, "channel", -1) is None
    # every method the search proposes for structure declares which of its parameters sets its strength
    searchable = [m for m in map(get_method, METHODS.names())
                  if m.search and m.family in ("prune", "distill", "factorize", "cluster")]
    assert all(m.stronger for m in searchable), [m.name for m in searchable if not m.stronger]


def test_after_the_design_the_search_steps_milder_after_a_near_miss_and_stronger_after_a_hit():
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    from sizewise.pipeline.search import line_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    dists = {"structure": CategoricalDistribution(["none", "distill"]), "distill.layers": IntDistribution(2, 4),
             "deploy": CategoricalDistribution(["none", "int8-dynamic"])}
    for layers in (3, 2, 4):
        study.add_trial(optuna.trial.create_trial(
            params={"structure": "distill", "distill.layers": layers, "deploy": "int8-dynamic"},
            distributions=dists, values=[85.0, 10.0]))
    study.add_trial(optuna.trial.create_trial(params={"structure": "none", "deploy": "int8-dynamic"},
                                              distributions={k: dists[k] for k in ("structure", "deploy")},
                                              values=[86.0, 14.0]))

    def verdict(trial, drop, meets):
        return Candidate(trial, "", 86.7 - drop, 10.0, drop, meets, None)

    allowed = 0.87
    candidates = [verdict(0, 1.3, False),  # layers:3 missed by little: try layers:4
                  verdict(1, 3.0, False),  # layers:2 missed by far: nothing
                  verdict(2, 0.5, True),  # layers:4 held: try layers:3 (already run, so the queue skips it)
                  verdict(3, 0.2, True)]  # no structure step: nothing to step along
    assert line_search(study, candidates, allowed) == [
        ({"structure": "distill", "distill.layers": 4, "deploy": "int8-dynamic"},
         "line search: distill one step milder than trial 0, which missed the budget by 0.43 points"),
        ({"structure": "distill", "distill.layers": 3, "deploy": "int8-dynamic"},
         "line search: distill one step stronger than trial 2, which held the budget")]


def test_students_learn_on_the_unlabeled_sentences_file(tmp_path):
    import optuna

    from sizewise.pipeline.trial import sample_plan

    text = SearchSpace("sentence-similarity", "tokens", "onnxruntime", "latency")
    slots = {"structure": ["distill"], "deploy": ["int8-dynamic"]}
    picks = {"structure": "distill", "distill.layers": 3, "deploy": "int8-dynamic", "int8-dynamic.per_channel": True}
    plan = sample_plan(optuna.trial.FixedTrial(picks), slots, text, unlabeled=str(tmp_path / "s.txt"))
    distill, int8 = (step.config for step in plan.steps)
    assert (distill.student, distill.unlabeled) == ("layers:3", str(tmp_path / "s.txt"))
    assert int8.per_channel is True and not hasattr(int8, "unlabeled")  # only a config that reads sentences gets it
    assert sample_plan(optuna.trial.FixedTrial(picks), slots, text).steps[0].config.unlabeled is None
    with pytest.raises(ConfigError, match="does not exist"):
        ShrinkConfig(distill_unlabeled=str(tmp_path / "missing.txt"))


def test_unknown_method_lists_the_registry_names(trained_digits_dir, tmp_path):
    from typer.testing import CliRunner

    from sizewise.cli.app import app

    searchable = [n for n in list_methods() if get_method(n).search is not None]
    with pytest.raises(ConfigError, match="unknown method 'pruning'") as info:
        ShrinkConfig(methods=("channel", "pruning"))
    assert all(name in info.value.hint for name in searchable) and "families: prune" in info.value.hint
    with pytest.raises(ConfigError, match="'gradual' is not searched by shrink"):
        ShrinkConfig(methods=("gradual",))
    assert ShrinkConfig(methods=("prune", "int8-dynamic")).methods == ("prune", "int8-dynamic")
    result = CliRunner().invoke(app, ["shrink", str(trained_digits_dir), "--data", "digits", "--out",
                                      str(tmp_path / "s"), "--methods", "channel,nosuch"])
    assert result.exit_code == 1
    assert "unknown method 'nosuch'" in result.output and "int8-dynamic" in result.output
    assert not (tmp_path / "s").exists()  # refused before any work


def test_a_failing_trial_writes_its_traceback_and_the_search_goes_on(trained_digits_dir, tmp_path, monkeypatch):
    def explode(model, config, ctx):
        raise RuntimeError("factorize exploded")

    monkeypatch.setitem(METHODS._items, "factorize", dataclasses.replace(get_method("factorize"), apply=explode))
    config = ShrinkConfig(**{**FAST, "methods": ("factorize", "int8-dynamic"), "trials": 2})
    results = shrink(str(trained_digits_dir), "digits", tmp_path, config, command="test")
    failed = [t for t in results.trials if t["state"] == "failed"]
    assert failed and all("factorize" in t["description"] for t in failed)
    error = tmp_path / "trials" / f"{failed[0]['number']:04d}" / "error.txt"
    assert failed[0]["error"] == str(error) and f"(traceback: {error})" in failed[0]["message"]
    text = error.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: factorize exploded" in text
    assert len([t for t in results.trials if t["state"] in ("complete", "pruned")]) == 2
    assert results.chosen is not None and "factorize" not in results.chosen.description


def test_a_search_whose_every_trial_fails_stops_instead_of_sampling_forever(trained_digits_dir, tmp_path,
                                                                           monkeypatch):
    from sizewise.core.errors import SizewiseError

    def explode(model, config, ctx):
        raise RuntimeError("broken install")

    monkeypatch.setitem(METHODS._items, "int8-dynamic", dataclasses.replace(get_method("int8-dynamic"), apply=explode))
    config = ShrinkConfig(**{**FAST, "methods": ("int8-dynamic",), "trials": 2})
    with pytest.raises(SizewiseError, match="no trial finished"):
        shrink(str(trained_digits_dir), "digits", tmp_path, config, command="test")
    trials = json.loads((tmp_path / "results.json").read_text())["trials"]
    assert 3 <= len([t for t in trials if t["state"] == "failed"]) <= 5
    assert len(trials) < 40  # failed, then skipped as hopeless, then stopped


def test_trials_take_picklable_inputs_and_the_ray_executor_imports():
    from sizewise.compress.prune import ChannelPrune
    from sizewise.compress.quantize import Int8Dynamic
    from sizewise.pipeline.executors import RayExecutor, make_executor
    from sizewise.pipeline.plan import Plan, Step
    from sizewise.pipeline.trial import TrialContext, TrialJob, run_trial
    from sizewise.train import TrainConfig

    job = TrialJob(3, Plan((Step("channel", ChannelPrune(0.4), TrainConfig(epochs=1)), Step.of(Int8Dynamic()))))
    ctx = TrialContext("out/baseline", "digits", "out", "accuracy", 0.9, 1.0, 33, {"latency_seconds": 0.05}, 0)
    assert pickle.loads(pickle.dumps((job, ctx))) == (job, ctx)
    assert callable(RayExecutor.run) and make_executor("local").run([]) == [] and callable(run_trial)


def test_bad_inputs(trained_digits_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown objective 'speed'"):
        ShrinkConfig(objective="speed")
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot write to --out"):
        shrink(str(trained_digits_dir), "digits", blocked / "out", ShrinkConfig(**FAST))
    with pytest.raises(DataError, match="models made for digits"):
        shrink("zoo:lenet5", "digits", tmp_path / "x", ShrinkConfig(**FAST))
    with pytest.raises(ConfigError, match="none of --methods head applies to this model"):
        shrink(str(trained_digits_dir), "digits", tmp_path / "y", ShrinkConfig(**{**FAST, "methods": ("head",)}))


def test_killed_search_resumes_without_losing_finished_trials(trained_digits_dir, tmp_path):
    out = tmp_path / "resume"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from sizewise.pipeline import ShrinkConfig, shrink\n"
            "shrink(%r, 'digits', %r, ShrinkConfig(trials=4, finetune_epochs=1, latency_seconds=0.05, threads=1,"
            " methods=('channel', 'int8-dynamic')), command='test')\n") % (
        str(Path(__file__).parents[1] / "helpers"), str(trained_digits_dir), str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 240
    finished = []
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.json").exists():
            finished = [t for t in json.loads((out / "results.json").read_text())["trials"]
                        if t["state"] == "complete"]
            if finished:
                break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished, "no trial finished before the kill"
    results = shrink(str(trained_digits_dir), "digits", out, ShrinkConfig(**{**FAST, "trials": 4}), command="test")
    done = [t for t in results.trials if t["state"] in ("complete", "pruned")]
    assert len(done) == 4
    kept = {t["number"]: t for t in results.trials}
    for t in finished:  # the trials finished before the kill are still there, unchanged
        assert kept[t["number"]]["metric"] == t["metric"] and Path(t["artifact"]).exists()


@pytest.mark.timeout(600)
def test_ray_executor_equals_local(trained_digits_dir, tmp_path):
    pytest.importorskip("ray")
    config = dict(FAST, objective="size")
    local = shrink(str(trained_digits_dir), "digits", tmp_path / "local", ShrinkConfig(**config), command="test")
    remote = shrink(str(trained_digits_dir), "digits", tmp_path / "ray", ShrinkConfig(**config, executor="ray"),
                    command="test")

    def essence(results):
        return [(t["plan"], t["state"], t["metric"], t["objectives"].get("size")) for t in results.trials]

    assert essence(local) == essence(remote)


def test_ctrl_c_keeps_finished_trials_and_says_how_to_resume(trained_digits_dir, tmp_path):
    out = tmp_path / "interrupted"
    exe = Path(sys.executable).with_name("sizewise")
    proc = subprocess.Popen([str(exe), "shrink", str(trained_digits_dir), "--data", "digits", "--out", str(out),
                             # more trials than can finish between the first one and the signal, however fast the machine
                             "--trials", "40", "--finetune-epochs", "1", "--threads", "1",
                             "--methods", "channel,int8-dynamic"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            # a child of a background job inherits SIGINT ignored; a terminal's Ctrl-C is not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (out / "results.json").exists() and json.loads((out / "results.json").read_text())["trials"]:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    # writing the report after the signal takes seconds on a quiet machine; 120 s ran out once while another
    # process held both cores, so the wait is generous (a hang still fails)
    output, _ = proc.communicate(timeout=360)
    assert proc.returncode == 130, output[-2000:]
    assert "run the same command again to resume" in output
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] and data["trials"] and (out / "report.html").exists()
    assert data["chosen"]["test"] is None  # an interrupted search never looked at the test split


def test_the_final_results_hold_trials_another_worker_finished_while_this_one_measured(tmp_path, monkeypatch):
    """Two workers share a study and an OUT: the file written last must list every trial, and its test cards must be
    those of the model it names (a trial finished meanwhile may change the choice; then that one is measured)."""
    from sizewise.pipeline import search as search_mod

    def cand(trial, objective):
        return Candidate(trial, f"t{trial}", 0.9, objective, 0.0, True, f"art{trial}")

    views = iter([[cand(0, 5.0)], [cand(0, 5.0), cand(1, 1.0)], [cand(0, 5.0), cand(1, 1.0)]])
    current = {"view": None}

    def outcomes():
        current["view"] = next(views)
        return current["view"]

    measured, written = [], []
    monkeypatch.setattr(search_mod, "_candidates", lambda search, outs: outs)
    monkeypatch.setattr(search_mod, "_test_cards", lambda search, data, artifact, progress: measured.append(artifact))
    monkeypatch.setattr(search_mod, "write_results",
                        lambda search, outs, cards, interrupted: written.append([c.trial for c in outs]) or "results")
    fake = type("S", (), {"out": tmp_path})()
    assert search_mod._write_final(fake, outcomes, None, lambda msg: None, False, None) == "results"
    assert measured == ["art0", "art1"]  # the first choice, then the one another worker's trial made better
    assert written == [[0, 1]]  # written once, after the second measurement, with both trials


def test_a_trial_killed_mid_run_runs_again_before_the_designed_start_goes_on():
    """The designed start is queued one ask ahead: the plan a kill interrupted, queued again on resume, is the next
    one asked for, so the resumed search runs its trials in the uninterrupted order."""
    import optuna

    from sizewise.pipeline.search import _queue_design

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    design = [({"pick": "a"}, "designed start"), ({"pick": "b"}, "designed start"), ({"pick": "c"}, "line search")]
    dist = {"pick": optuna.distributions.CategoricalDistribution(["a", "b", "c"])}
    _queue_design(study, design, 1)
    first = study.ask(dist)
    assert first.params == {"pick": "a"}
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))  # b is not queued yet
    # the process dies while trial 0 runs; the next start fails it and queues its plan again
    study.tell(first.number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(first.params)
    _queue_design(study, design, 1)
    assert study.ask(dist).params == {"pick": "a"}  # the interrupted plan first, then the design goes on
    _queue_design(study, design, 1)
    assert study.ask(dist).params == {"pick": "b"}
    _queue_design(study, design, 2)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"pick": "c"}]  # a queued trial's plan
    assert [t.user_attrs["origin"] for t in waiting] == ["line search"]  # and why it is queued


def test_a_trial_draws_its_random_numbers_from_its_plan_not_its_number(trained_digits_dir, tmp_path, monkeypatch):
    """A killed trial runs again under a new number: it must start from the same seed, or the resumed search
    differs from an uninterrupted one. The run itself is replaced by a probe of torch's seed."""
    import shutil as sh

    import torch

    from sizewise.compress.prune import ChannelPrune
    from sizewise.compress.quantize import Int8Dynamic
    from sizewise.pipeline import executor, trial
    from sizewise.pipeline.plan import Plan, Step

    seeds = []

    class Probe(Exception):
        pass

    def probe(*args, **kwargs):
        seeds.append(torch.initial_seed())
        raise Probe

    monkeypatch.setattr(executor, "run", probe)
    baseline = tmp_path / "baseline"
    sh.copytree(trained_digits_dir, baseline)
    (baseline / trial.VALIDATION_CARD).write_text("{}")
    ctx = trial.TrialContext(str(baseline), "digits", str(tmp_path), "accuracy", 0.9, 1.0, 33, {}, 0)
    prune, quant = Plan((Step.of(ChannelPrune(0.4)),)), Plan((Step.of(Int8Dynamic()),))
    for number, plan in ((1, prune), (7, prune), (2, quant)):
        assert trial.run_trial(trial.TrialJob(number, plan), ctx).state == "failed"  # the probe stopped it
    assert seeds[0] == seeds[1] != seeds[2]


def test_a_queued_trial_killed_before_it_sampled_anything_runs_its_plan_again():
    """Killed between Optuna's ask and the plan's sampling, a queued trial holds no parameters, only the ones it was
    queued with: those are queued again (an empty plan would let the sampler pick another)."""
    import optuna

    from sizewise.pipeline.search import _queue_again

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({"pick": "a"}, user_attrs={"origin": "designed start"})
    asked = study.ask()  # RUNNING, nothing suggested yet: the process dies here
    assert asked.params == {}
    study.tell(asked.number, state=optuna.trial.TrialState.FAIL)
    _queue_again(study, study.trials[asked.number])
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"pick": "a"}]
    assert [t.user_attrs["origin"] for t in waiting] == ["designed start (run again after an interruption)"]
    fresh = optuna.create_study(directions=["maximize", "minimize"])
    sampled = fresh.ask()  # a sampled trial killed before sampling: nothing to repeat
    fresh.tell(sampled.number, state=optuna.trial.TrialState.FAIL)
    _queue_again(fresh, fresh.trials[sampled.number])
    assert fresh.get_trials(states=(optuna.trial.TrialState.WAITING,)) == []
