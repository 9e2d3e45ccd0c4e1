"""``sizewise demo``: MiniLM on the bundled STS-B sample, shrunk for latency on onnxruntime, with a measured gain."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sizewise.cli import demo_cmd
from sizewise.cli.app import app

runner = CliRunner()


def test_demo_wires_minilm_the_bundled_sample_and_a_latency_search(tmp_path, monkeypatch):
    seen = {}

    def fake_run_shrink(model, data, out, config, command=None):
        seen.update(model=model, data=data, out=out, config=config, command=command)
        return "results"

    monkeypatch.setattr("sizewise.cli.shrink_cmd.run_shrink", fake_run_shrink)
    monkeypatch.setattr("sizewise.cli.shrink_cmd.print_outcome", lambda results, out: seen.update(printed=results))
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert seen["model"] == "minilm" and seen["out"] == tmp_path / "d" and seen["printed"] == "results"
    assert (Path(seen["data"]) / "test.tsv").is_file() and Path(seen["data"]) == demo_cmd.sample_path()
    config = seen["config"]
    assert (config.objective, config.runtime, config.methods) == ("latency", "onnxruntime",
                                                                 ("int8-dynamic", "ort-optimize"))
    assert config.max_drop.absolute and config.max_drop.value == 1.0  # one Spearman point
    assert config.trials == 2 and config.finetune_epochs == 0 and config.threads == 1
    assert "sizewise demo --out" in seen["command"] and "1 point of Spearman" in result.output


def test_each_demo_method_applies_to_minilm_and_is_tried_once():
    """With the default trial count, the search's designed start tries every demo method once: the result then
    depends on measurement, not on what a sampler happened to draw."""
    from sizewise.models.loader import load
    from sizewise.pipeline.config import resolve_methods
    from sizewise.pipeline.trial import initial_design, search_space, slot_methods

    config = demo_cmd.demo_config(len(demo_cmd.METHODS))
    space = search_space(load("minilm"), config.runtime, config.objective)
    slots, left_out = slot_methods(resolve_methods(config.methods), space, has_train=True)
    assert left_out == [] and slots == {"deploy": list(demo_cmd.METHODS)}
    design = initial_design(slots, space, config.trials)
    assert sorted(p["deploy"] for p in design) == sorted(demo_cmd.METHODS)


def test_demo_says_so_when_the_sample_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_cmd, "sample_path", lambda: tmp_path / "nowhere")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "bundled STS-B sample is missing" in result.output and "reinstall" in result.output


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~3 CPU-minutes; several times that in wall time on a busy 2-core machine
def test_demo_shows_a_measured_trade_off(tmp_path):
    """The whole demo (about 2-3 minutes on 2 cores): a choice within budget on validation, numbers on test, a front
    of at least two points, and a speed-up against fp32 on the same runtime that is judged against its interval."""
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "d" / "results.json").read_text())
    assert (saved["selection_split"], saved["reported_split"]) == ("validation", "test")
    chosen = saved["chosen"]
    assert chosen["validation"]["meets_budget"] and chosen["test"]["meets_budget"]
    assert chosen["validation"]["split"] == "validation" and chosen["test"]["split"] == "test"
    assert chosen["test"]["card"]["metrics"]["split"] == "test" and chosen["test"]["card"]["metrics"]["examples"] == 250
    assert chosen["description"].split("(")[0] in demo_cmd.METHODS
    assert len(saved["pareto"]) >= 2
    assert saved["baseline"]["runtime_fp32"]["params"]["total"] == 22_713_216
    speedup = saved["speedups"]["runtime_fp32"]
    assert (speedup["runtime_a"], speedup["runtime_b"]) == ("onnxruntime", "onnxruntime")
    low, high = speedup["speedup_ci95"]
    assert low <= speedup["speedup"] <= high
    assert speedup["outcome"] == ("faster" if speedup["decision_interval"][0] > 1 else
                                  "slower" if speedup["decision_interval"][1] < 1 else "none")
    assert (tmp_path / "d" / "report.html").is_file() and "report.html" in result.output
