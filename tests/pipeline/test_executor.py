"""The one executor: validation before anything runs, the guard, split discipline, the run record, resume."""

import json

import numpy as np
import pytest
import torch

import sizewise
from sizewise.compress.registry import Method, StepOutput, register
from sizewise.core.errors import ConfigError
from sizewise.core.registry import UnknownNameError
from sizewise.data.dataset import Dataset, Split
from sizewise.pipeline.executor import BrokenResultError
from sizewise.pipeline.plan import Plan, Step, build_step, load_plan, parse_plan


def _model():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    return sizewise.wrap(mlp, torch.randn(1, 1, 8, 8), task="image-classification")


@pytest.fixture
def fast():
    return sizewise.MeasureConfig(latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False)


def test_two_step_plan_writes_the_run_record_with_splits(tmp_path, fast, one_thread):
    plan = Plan((Step.of(sizewise.TrainConfig(epochs=2)), Step.of(sizewise.MagnitudePrune(0.5)),
                 Step.of(sizewise.Int8Dynamic())))
    result = sizewise.run(_model(), plan, data="digits", out=tmp_path, measure_config=fast)
    record = json.loads((tmp_path / "card.json").read_text())
    assert record["schema"] == "sizewise.run/1" and record["kind"] == "python"
    assert [s["method"] for s in record["steps"]] == ["train", "magnitude", "int8-dynamic"]
    assert record["steps"][1]["config"] == {"sparsity": 0.5, "scope": "global"}
    assert all(s["metrics"]["split"] == "validation" for s in record["steps"])
    assert record["before"]["metrics"]["split"] == record["after"]["metrics"]["split"] == "test"
    assert record["data"]["sizes"] == {"train": 1212, "validation": 135, "test": 450}  # digits: 1,797 images
    assert record["data"]["validation_source"].startswith("carved from train")
    assert record["roles"] == {"before": "input", "after": "result"}
    assert record["after"]["latency"]["runtime"] == "onnxruntime"  # the last step made an ONNX graph
    # trained: better than chance on test; the step's sparsity survived save and reload
    assert result.after.metrics["accuracy"] > 0.5
    assert result.steps[1].details["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert (tmp_path / "model" / "model.onnx").is_file()


def test_steps_never_see_the_test_split(tmp_path, fast, one_thread):
    seen = []

    def spy(model, config, ctx):
        seen.append(sorted(ctx.data.splits))
        return StepOutput(model)

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Spy:
        pass

    register(Method("spy-step", "runtime", Spy, spy, "test only"))
    try:
        sizewise.run(_model(), Plan.of(Spy()), data="digits", out=tmp_path, measure_config=fast)
    finally:
        from sizewise.compress.registry import METHODS

        METHODS._items.pop("spy-step")
    assert seen == [["train", "validation"]]


def test_a_torch_step_after_an_onnx_step_is_refused_before_anything_runs(tmp_path):
    plan = Plan.of(sizewise.Int8Dynamic(), sizewise.MagnitudePrune(0.5))
    with pytest.raises(ConfigError, match=r"step 2 \(magnitude\) works on PyTorch models, but step 1 made"):
        sizewise.run(_model(), plan, data="digits", out=tmp_path)
    assert not (tmp_path / "before.json").exists()


def test_a_step_that_needs_data_without_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs data"):
        sizewise.run(_model(), Plan.of(sizewise.Int8Static()), out=tmp_path)


def test_the_guard_stops_a_step_that_breaks_the_model(tmp_path, fast, one_thread):
    def breaks(model, config, ctx):
        with torch.no_grad():
            model.module[1].weight.fill_(float("nan"))
        return {}

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Break:
        pass

    register(Method("nan-step", "runtime", Break, breaks, "test only"))
    try:
        with pytest.raises(BrokenResultError, match="non-finite"):
            sizewise.run(_model(), Plan.of(Break()), data="digits", out=tmp_path, measure_config=fast)
    finally:
        from sizewise.compress.registry import METHODS

        METHODS._items.pop("nan-step")
    assert not (tmp_path / "model").exists()


def test_resume_skips_finished_steps(tmp_path, fast, one_thread):
    calls = []

    def counted(model, config, ctx):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed in the second step
        return {}

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Count:
        n: int = 0

    register(Method("count-step", "runtime", Count, counted, "test only"))
    try:
        plan = Plan.of(Count(1), Count(2))
        with pytest.raises(KeyboardInterrupt):
            sizewise.run(_model(), plan, data="digits", out=tmp_path, measure_config=fast)
        log = json.loads((tmp_path / "steps.json").read_text())
        assert len(log["steps"]) == 1
        first = tmp_path / "steps" / "01-count-step" / "model"
        mtime = max(f.stat().st_mtime_ns for f in first.iterdir())
        result = sizewise.run(_model(), plan, data="digits", out=tmp_path, measure_config=fast)
        assert len(calls) == 3 and result.resumed_from == 1 and len(result.steps) == 2
        assert max(f.stat().st_mtime_ns for f in first.iterdir()) == mtime
        with pytest.raises(ConfigError, match="different plan"):
            sizewise.run(_model(), Plan.of(Count(5)), data="digits", out=tmp_path, measure_config=fast)
    finally:
        from sizewise.compress.registry import METHODS

        METHODS._items.pop("count-step")


def test_recipe_parsing_reads_the_registry_and_names_bad_fields():
    plan = parse_plan({"steps": [{"prune": {"method": "gradual", "sparsity": 0.8, "epochs": 2}},
                                 {"finetune": {"epochs": 1}}, {"quantize": {"method": "int8-static"}},
                                 {"distill": {"student": "width:0.5", "epochs": 1}}]})
    assert [s.method for s in plan.steps] == ["gradual", "finetune", "int8-static", "distill"]
    assert plan.steps[0].train.epochs == 2 and plan.steps[0].config.sparsity == 0.8
    with pytest.raises(ConfigError, match=r"step 1 has unknown method 'prnue'"):
        parse_plan({"steps": [{"prnue": {}}]})
    with pytest.raises(ConfigError, match=r"field 'sparsity' must be float"):
        parse_plan({"steps": [{"magnitude": {"sparsity": "lots"}}]})
    with pytest.raises(ConfigError, match="unknown prune method 'int8-dynamic'"):
        build_step("prune", {"method": "int8-dynamic"}, "here")
    with pytest.raises(ConfigError, match="unknown field 'bits'"):  # int4-weight fixes it
        build_step("int4-weight", {"bits": 8}, "here")
    assert [s.method for s in load_plan("deep-compression").steps] == \
        ["gradual", "finetune", "cluster", "finetune", "huffman"]


def test_unknown_method_names_list_the_known_ones():
    from sizewise.compress.registry import get_method

    with pytest.raises(UnknownNameError) as info:
        get_method("magnitud")
    assert "did you mean 'magnitude'" in info.value.hint and "int8-dynamic" in info.value.hint


def test_a_hand_made_dataset_gets_a_validation_split_and_keeps_test_apart(tmp_path, fast, one_thread):
    rng = np.random.default_rng(0)
    x = rng.random((200, 1, 8, 8), dtype=np.float32)
    y = np.arange(200) % 10
    data = Dataset("mine", "image-classification", {"train": Split(x[:150], y[:150]), "test": Split(x[150:], y[150:])},
                   num_classes=10, input_shape=(1, 8, 8))
    result = sizewise.run(_model(), Plan.of(sizewise.MagnitudePrune(0.3)), data=data, out=tmp_path,
                          measure_config=fast)
    sizes = result.record["data"]["sizes"]
    assert sizes == {"train": 135, "validation": 15, "test": 50}
    assert result.steps[0].metrics["examples"] == 15 and result.after.metrics["examples"] == 50
