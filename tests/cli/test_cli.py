import json

import pytest
from typer.testing import CliRunner

from sizewise.cli.app import app

runner = CliRunner()
FAST = ["--no-memory"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_measure_writes_a_card(tmp_path):
    result = invoke("measure", "zoo:lenet5", "--json", tmp_path / "card.json", *FAST)
    assert result.exit_code == 0, result.output
    assert "431,080" in result.output and "estimated" in result.output
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["flops"]["total"] == 4_586_000 and card["energy"]["method"].startswith(("estimated", "measured"))


def test_measure_with_data_reports_accuracy(tmp_path):
    result = invoke("measure", "zoo:digits-cnn", "--data", "digits", "--eval-limit", "100", *FAST)
    assert result.exit_code == 0, result.output
    assert "on 100 examples of the test split" in result.output


@pytest.mark.parametrize("args, message", [
    (["measure", "zoo:nope"], "unknown zoo model 'nope'"),
    (["measure", "missing/model.onnx"], "no such file or directory"),
    (["measure", "tiny_models:broken"], "raised RuntimeError"),
    (["measure", "zoo:lenet5", "--input-shape", "3,32,32"], "rejected inputs"),
    (["measure", "zoo:lenet5", "--input-shape", "a,b"], "--input-shape must be integers"),
    (["measure", "zoo:lenet5", "--batch-size", "0"], "batch size must be a positive integer"),
    (["measure", "zoo:lenet5", "--runtime", "tvm"], "unknown runtime 'tvm'"),
    (["measure", "zoo:lenet5", "--data", "nowhere"], "no such dataset path"),
    (["measure", "zoo:lenet5", "--data", "digits"], "models made for digits: zoo:digits-cnn"),
])
def test_bad_input_is_one_clear_line_and_exit_1(args, message):
    result = invoke(*args, *FAST)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error:")


def test_pickle_refused_then_trusted(tmp_path):
    import tiny_models
    import torch

    torch.save(tiny_models.tiny_mlp(), tmp_path / "m.pt")
    refused = invoke("measure", tmp_path / "m.pt", *FAST)
    assert refused.exit_code == 1 and "--trust-pickle" in refused.output
    trusted = invoke("measure", tmp_path / "m.pt", "--trust-pickle", *FAST)
    assert trusted.exit_code == 0, trusted.output


def test_truncated_safetensors_via_cli(tmp_path):
    from safetensors.torch import save_file

    import sizewise

    path = tmp_path / "w.safetensors"
    save_file(sizewise.load("zoo:lenet5").module.state_dict(), path)
    path.write_bytes(path.read_bytes()[:300])
    result = invoke("measure", path, "--arch", "zoo:lenet5", *FAST)
    assert result.exit_code == 1 and "truncated or corrupt" in result.output


def test_debug_shows_the_traceback():
    result = invoke("--debug", "measure", "zoo:nope", *FAST)
    assert result.exit_code != 0
    assert result.exception is not None and "unknown zoo model" in str(result.exception)


def test_quantize_refuses_a_runtime_a_method_does_not_make_a_model_for(tmp_path):
    result = runner.invoke(app, ["quantize", "zoo:digits-cnn", "--method", "int4-rtn", "--runtime", "torch",
                                 "--out", str(tmp_path / "q")])
    assert result.exit_code == 1
    assert "--method int4-rtn makes a model for llamacpp, not torch" in " ".join(result.output.split())


def test_quantize_max_size_is_read_as_a_size_and_only_where_it_applies(tmp_path):
    result = runner.invoke(app, ["quantize", "zoo:digits-cnn", "--method", "int4-rtn", "--max-size", "lots",
                                 "--out", str(tmp_path / "q")])
    assert result.exit_code == 1 and "--max-size: not a size: 'lots'" in " ".join(result.output.split())
    result = runner.invoke(app, ["quantize", "zoo:digits-cnn", "--method", "int8-dynamic", "--max-size", "10MB",
                                 "--out", str(tmp_path / "q")])
    assert result.exit_code == 1 and "--max-size does not apply to --method int8-dynamic" in " ".join(result.output.split())
