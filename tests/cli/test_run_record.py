"""Every command that changes a model is a plan run by the one executor and writes the one run record
(``OUT/card.json``, schema ``sizewise.run/1``), and ``sizewise report DIR`` renders any of them."""

import dataclasses
import functools
import html
import importlib
import json

import pytest
import torch
from typer.testing import CliRunner

import sizewise
from sizewise.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def short_timing(monkeypatch):
    """Short timing, no memory child process, one thread: these tests check the records, not this machine."""
    api = importlib.import_module("sizewise.measure.api")  # `sizewise.measure` is the verb; its module is here
    monkeypatch.setattr(api, "MeasureConfig", functools.partial(
        api.MeasureConfig, latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A digits CNN trained for 2 epochs on one thread (~80% accuracy), saved as a run directory."""
    loaded = sizewise.load("zoo:digits-cnn")
    sizewise.train(loaded, sizewise.load_dataset("digits"), sizewise.TrainConfig(epochs=2, seed=0, threads=1))
    path = tmp_path_factory.mktemp("base")
    sizewise.save_model(loaded, path / "model")
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


RECIPE = "name: small\nsteps:\n  - prune: {sparsity: 0.5}\n  - quantize: {method: int8-dynamic}\n"

# command -> (its arguments after the model, the step methods its record must hold)
COMMANDS = {
    "prune": (["--data", "digits", "--method", "magnitude", "--sparsity", "0.5", "--finetune-epochs", "0"],
              ["magnitude"]),
    "quantize": (["--data", "digits", "--method", "int8-dynamic"], ["int8-dynamic"]),
    "distill": (["--student", "width:0.5", "--data", "digits", "--epochs", "1"], ["distill"]),
    "finetune": (["--data", "digits", "--head", "new", "--freeze", "backbone", "--epochs", "1", "--labels", "200"],
                 ["finetune"]),
    "factorize": (["--data", "digits", "--energy", "0.9", "--finetune-epochs", "0"], ["factorize"]),
    "cluster": (["--data", "digits", "--bits", "4", "--finetune-epochs", "0"], ["cluster"]),
    "compress": (["--recipe", "RECIPE", "--data", "digits"], ["magnitude", "int8-dynamic"]),
    "train": (["--data", "digits", "--epochs", "1"], ["train"]),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_writes_the_run_record_and_report_renders_it(command, base_dir, tmp_path):
    args, methods = COMMANDS[command]
    (tmp_path / "r.yaml").write_text(RECIPE)
    args = [str(tmp_path / "r.yaml") if a == "RECIPE" else a for a in args]
    model = "zoo:digits-cnn" if command == "train" else str(base_dir)
    out = tmp_path / "out"
    result = invoke(command, model, *args, "--out", out, "--threads", "1")
    assert result.exit_code == 0, result.output

    record = json.loads((out / "card.json").read_text())
    assert record["schema"] == "sizewise.run/1" and record["kind"] == command
    assert record["command"].startswith("sizewise") and record["model"] == model
    assert [s["method"] for s in record["steps"]] == methods
    assert all(isinstance(s["config"], dict) and s["config"] for s in record["steps"])
    assert all(s["metrics"]["split"] == "validation" for s in record["steps"])  # decisions never see test
    for card in ("before", "after"):
        assert record[card]["schema"] == "sizewise.card/1"
        assert record[card]["metrics"]["split"] == "test" and "accuracy" in record[card]["metrics"]
    assert record["roles"] == ({"before": "teacher", "after": "student"} if command == "distill"
                               else {"before": "input", "after": "result"})
    assert record["verdict"]["metric"] == "accuracy" and record["verdict"]["split"] == "test"
    assert record["verdict"]["message"] and record["environment"]["cpu_flags"]
    assert record["data"]["reported"] == "test" and record["data"]["decisions"] == "validation"
    if command in ("quantize", "compress"):  # the fp32 model on torch eager beside fp32 on onnxruntime
        assert set(record["references"]) == {"torch"}
        assert record["before"]["latency"]["runtime"] == "onnxruntime"
        assert record["references"]["torch"]["latency"]["runtime"] == "torch"
    assert sizewise.load(str(out)).module is not None  # the run directory is a model reference

    (out / "report.html").unlink(missing_ok=True)  # quantize writes it at once; report must write it again
    shown = invoke("report", out)
    assert shown.exit_code == 0, shown.output
    assert f"wrote {out / 'report.html'}" in shown.output.replace("\n", "")
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for method in methods:
        assert method in markdown and html.escape(method) in page
    assert model in markdown and html.escape(model) in page
    assert record["verdict"]["message"] in markdown
    roles = record["roles"]
    assert f"| | {roles['before']} | {roles['after']} | ratio |" in markdown


def test_finetune_record_keeps_the_untrained_head_accuracy_in_the_step(base_dir, tmp_path):
    out = tmp_path / "ft"
    result = invoke("finetune", base_dir, "--data", "digits", "--head", "new", "--freeze", "backbone",
                    "--epochs", "2", "--labels", "300", "--out", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    details = json.loads((out / "card.json").read_text())["steps"][0]["details"]["finetune"]
    assert details["head_replaced"] and details["labelled_examples"] == 300
    assert details["metrics_after"]["accuracy"] > details["metrics_before"]["accuracy"] + 0.2
    assert "before (new head, untrained)" in result.output and "3 × forward" in result.output


@pytest.fixture()
def prune_run(base_dir, tmp_path):
    out = tmp_path / "p"
    result = invoke("prune", base_dir, "--data", "digits", "--sparsity", "0.5", "--finetune-epochs", "0",
                    "--threads", "1", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_report_escapes_every_string_from_the_record(prune_run):
    record = json.loads((prune_run / "card.json").read_text())
    evil = '<script>alert("x")</script>'
    record["model"] = evil
    record["command"] = f"sizewise prune {evil}"
    record["roles"] = {"before": f"<b>{evil}", "after": "<i>after"}
    record["steps"][0]["method"] = f"<img src=x onerror=alert(1)>{evil}"
    record["steps"][0]["description"] = evil
    record["steps"][0]["details"]["sensitivity"] = [{"node": evil, "op_type": "<MatMul>", "output_error": 0.5,
                                                     "metric_drop": None}]
    record["after"]["warnings"] = [evil]
    (prune_run / "card.json").write_text(json.dumps(record))
    shown = invoke("report", prune_run)
    assert shown.exit_code == 0, shown.output
    page = (prune_run / "report.html").read_text()
    assert "<script>" not in page and "<img" not in page and "<b>" not in page and "<MatMul>" not in page
    assert html.escape(evil) in page and 'id="sensitivity"' in page


@pytest.mark.parametrize("schema", ["sizewise.compression/1", "sizewise.quantization/1", "sizewise.recipe/1",
                                    "sizewise.finetune/1", "sizewise.distill/1"])
def test_report_refuses_records_of_earlier_versions_in_one_line(schema, tmp_path):
    (tmp_path / "card.json").write_text(json.dumps({"schema": schema, "before": {}, "after": {}}))
    shown = invoke("report", tmp_path)
    assert shown.exit_code == 1 and shown.output.strip().startswith("error:")
    assert schema in shown.output and "re-run" in shown.output and "Traceback" not in shown.output
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("args, message", [
    (["prune", "--method", "nope", "--sparsity", "0.5"], "unknown prune method 'nope'"),
    (["prune", "--method", "int8-dynamic"], "unknown prune method 'int8-dynamic'"),
    (["prune", "--method", "magnitude"], "--method magnitude needs --sparsity"),
    (["prune", "--method", "magnitude", "--sparsity", "0.5", "--rounds", "2"], "--rounds does not apply"),
    (["prune", "--method", "nm", "--pattern", "4:2"], "N:M needs 0 < N < M"),
    (["prune", "--method", "gradual", "--sparsity", "0.5", "--finetune-epochs", "0"], "trains while it prunes"),
    (["prune", "--sparsity", "1.5"], "sparsity must be in [0, 1)"),
    (["quantize", "--method", "int3"], "unknown quantize method 'int3'"),
    (["quantize", "--method", "bf16"], "bf16 is not available on onnxruntime"),
    (["quantize", "--method", "int8-dynamic", "--group-size", "64"], "--group-size does not apply"),
    (["quantize", "--max-drop", "1%"], "--max-drop needs --data"),
    (["factorize", "--energy", "0.8", "--rank", "3"], "exactly one of"),
    (["cluster", "--bits", "0"], "bits"),
])
def test_bad_method_options_are_one_red_line_before_anything_runs(args, message, tmp_path):
    command, *rest = args
    data = [] if command == "quantize" else ["--data", "digits"]
    result = invoke(command, "zoo:digits-cnn", *rest, *data, "--out", tmp_path / "x")
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().startswith("error:")
    assert not (tmp_path / "x").exists()  # refused before the executor wrote anything


def test_train_resumes_a_killed_run_only_when_asked_and_refuses_another_plan(tmp_path, monkeypatch, request):
    loop = importlib.import_module("sizewise.train.loop")  # `sizewise.train` is the verb

    out = tmp_path / "t"
    args = ["train", "zoo:digits-cnn", "--data", "digits", "--epochs", "2", "--threads", "1", "--out", out]
    save = loop._save_checkpoint
    threads_seen = []

    def save_then_die(path, state):
        threads_seen.append(torch.get_num_threads())
        save(path, state)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(2)

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    killed = invoke(*args)
    assert killed.exit_code == 130  # Ctrl-C: what a kill between epochs leaves behind
    assert threads_seen == [1] and torch.get_num_threads() == 2  # --threads 1 trained at 1 thread, then restored
    monkeypatch.setattr(loop, "_save_checkpoint", save)
    assert (out / "steps" / "01-train" / "work" / "checkpoint.pt").is_file() and not (out / "steps.json").exists()
    refused = invoke(*args)  # without --resume a folder holding a run is not touched
    assert refused.exit_code == 1 and "already holds a run" in refused.output and "--resume" in refused.output
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed after epoch 1" in resumed.output and "epoch   2" in resumed.output
    record = json.loads((out / "card.json").read_text())
    assert record["kind"] == "train" and record["steps"][0]["details"]["training"]["resumed_from_epoch"] == 1
    assert not (out / "steps" / "01-train" / "work").exists()  # a finished step's checkpoints are removed
    model_file = out / "model" / "model.safetensors"
    stamp = model_file.stat().st_mtime_ns
    again = invoke(*args, "--resume")  # finished: nothing is trained again, the result is measured again
    assert again.exit_code == 0, again.output
    assert "resumed: step 1 of 1 was already done" in again.output
    assert json.loads((out / "card.json").read_text())["resumed_from"] == 1
    other = invoke(*args[:-6], "--epochs", "3", "--threads", "1", "--out", out, "--resume")
    assert other.exit_code == 1 and "holds a run of a different plan" in other.output
    assert model_file.stat().st_mtime_ns >= stamp


KILLED_RECIPE = """name: prune-finetune-int8
steps:
  - prune: {method: magnitude, sparsity: 0.5}
  - finetune: {epochs: 1, lr: 0.001}
  - quantize: {method: int8-dynamic}
"""


def test_recipe_with_quantize_resumes_after_a_kill_in_its_second_step(base_dir, digits, tmp_path,
                                                                      monkeypatch):
    from sizewise.compress.registry import METHODS
    from sizewise.pipeline.executor import RunOptions, run
    from sizewise.pipeline.plan import load_plan

    recipe = tmp_path / "r.yaml"
    recipe.write_text(KILLED_RECIPE)
    out = tmp_path / "run"
    finetune = METHODS.get("finetune")

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # what Ctrl-C (or a kill between epochs) does to a running step

    monkeypatch.setitem(METHODS._items, "finetune", dataclasses.replace(finetune, apply=killed))
    api = importlib.import_module("sizewise.measure.api")
    with pytest.raises(KeyboardInterrupt):
        run(sizewise.load(str(base_dir)), load_plan(str(recipe)), digits, out,
            RunOptions(measure=api.MeasureConfig(threads=1), kind="compress"))
    log = json.loads((out / "steps.json").read_text())
    assert [s["method"] for s in log["steps"]] == ["magnitude"]
    first = out / "steps" / "01-magnitude" / "model" / "model.safetensors"
    stamp = first.stat().st_mtime_ns
    monkeypatch.setitem(METHODS._items, "finetune", finetune)

    result = invoke("compress", base_dir, "--recipe", recipe, "--data", "digits", "--out", out,
                    "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "resumed: step 1 of 3 was already done" in result.output
    assert first.stat().st_mtime_ns == stamp  # step 1 was not run again
    record = json.loads((out / "card.json").read_text())
    assert [s["method"] for s in record["steps"]] == ["magnitude", "finetune", "int8-dynamic"]
    assert record["resumed_from"] == 1 and record["kind"] == "compress"
    assert record["steps"][1]["details"]["weight_sparsity"] == pytest.approx(0.5, abs=0.01)  # zeros kept
    assert record["after"]["latency"]["runtime"] == "onnxruntime" and (out / "model").is_dir()


def test_a_recipe_step_after_an_onnx_graph_is_refused_before_anything_runs(base_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - quantize: {method: int8-dynamic}\n  - prune: {sparsity: 0.5}\n")
    result = invoke("compress", base_dir, "--recipe", recipe, "--data", "digits", "--out", tmp_path / "x")
    assert result.exit_code == 1 and result.output.strip().startswith("error:")
    assert "step 2 (magnitude) works on PyTorch models, but step 1 made it an ONNX graph" in result.output
    assert not (tmp_path / "x").exists()
