import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import sizewise
from sizewise.compress import list_methods
from sizewise.compress.factorize import Factorize, factorize
from sizewise.compress.registry import StepContext
from sizewise.core.errors import ConfigError
from sizewise.models.artifact import save_model
from sizewise.models.lowrank import LowRankConv2d, LowRankLinear, apply_lowrank_structure, lowrank_ranks


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def _loaded(module):  # factorize only needs the module (and a name for messages)
    return SimpleNamespace(module=module.eval(), reference="test")


def _with_singular_values(out, inner, values, seed=0):
    """A weight out x inner whose singular values are exactly ``values`` (the rest zero)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(out, len(values), generator=g))
    v, _ = torch.linalg.qr(torch.randn(inner, len(values), generator=g))
    return u @ torch.diag(torch.tensor(values)) @ v.T


def test_registered_as_a_structured_method():
    from sizewise.compress.registry import METHODS

    assert "factorize" in list_methods() and METHODS.get("factorize").structured


@pytest.mark.parametrize("energy, rank", [(0.5, 1), (0.8, 2), (0.9, 3), (0.96, 3), (0.97, 4), (1.0, 4)])
def test_energy_picks_the_smallest_rank_that_keeps_it(energy, rank):
    # singular values 4, 3, 2, 1: energy 16, 9, 4, 1 of 30, so rank r keeps 16/30, 25/30, 29/30, 30/30
    model = nn.Sequential(nn.Linear(40, 40))
    model[0].weight.data = _with_singular_values(40, 40, [4.0, 3.0, 2.0, 1.0])
    details = factorize(_loaded(model), Factorize(energy=energy), StepContext())
    row = details["layers"]["0"]
    assert row["rank"] == rank and isinstance(model[0], LowRankLinear) and model[0].rank == rank
    assert row["energy_kept"] == pytest.approx([16 / 30, 25 / 30, 29 / 30, 1.0][rank - 1], rel=1e-5)
    assert row["params_after"] == rank * 80 + 40


def test_linear_of_low_rank_is_reproduced_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 8))
    model[0].weight.data = _with_singular_values(32, 48, [3.0, 2.0, 0.5])
    x = torch.randn(5, 48)
    expected = model(x)
    details = factorize(_loaded(model), Factorize(energy=1.0, layers="0"), StepContext())
    assert details["layers"]["0"]["rank"] == 3 and list(details["layers"]) == ["0"]  # the pattern picked one layer
    assert isinstance(model[0], LowRankLinear) and isinstance(model[2], nn.Linear)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_conv_of_low_rank_is_reproduced_exactly():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, dilation=1)
    conv.weight.data = (torch.randn(16, 2) @ torch.randn(2, 8 * 9)).reshape(16, 8, 3, 3)  # rank 2
    model = nn.Sequential(conv)
    x = torch.randn(2, 8, 9, 9)
    expected = model(x)
    details = factorize(_loaded(model), Factorize(energy=1.0), StepContext())
    assert details["layers"]["0"]["rank"] == 2 and details["layers"]["0"]["shape"] == [16, 8, 3, 3]
    assert isinstance(model[0], LowRankConv2d) and model[0].down.stride == (2, 2)
    assert model[0].up.kernel_size == (1, 1) and model[0].down.bias is None
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_a_layer_where_factors_would_be_bigger_stays_dense():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 10))
    details = factorize(_loaded(model), Factorize(rank=9), StepContext())  # 9 * (64 + 10) = 666 > 640: no saving
    assert isinstance(model[0], LowRankLinear) and model[0].rank == 9
    assert type(model[1]) is nn.Linear and details["left_dense"] == ["1"]
    row = details["layers"]["1"]
    assert not row["factorized"] and row["chosen_rank"] == 9 and row["params_after"] == row["params_before"] == 650


def test_target_params_is_met_overall():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(96, 80), nn.ReLU(), nn.Linear(80, 64), nn.ReLU(), nn.Linear(64, 10))
    total = sum(p.numel() for p in model.parameters())
    details = factorize(_loaded(model), Factorize(target_params=0.4), StepContext())
    now = sum(p.numel() for p in model.parameters())
    assert now == details["params_after"] <= 0.4 * total
    assert details["params_after"] > 0.3 * total  # the threshold is the largest that fits, not just any
    assert details["params_kept"] == pytest.approx(now / total)
    with pytest.raises(ConfigError, match="rank 1 everywhere already keeps"):
        factorize(_loaded(nn.Sequential(nn.Linear(96, 80))), Factorize(target_params=0.001), StepContext())


def test_convolutions_can_be_left_out():
    model = sizewise.load("zoo:lenet5").module
    details = factorize(_loaded(model), Factorize(energy=0.5, include_conv=False), StepContext())
    assert set(details["layers"]) == {"fc1", "fc2"} and type(model.conv2) is nn.Conv2d


def test_no_matching_layer_names_the_layers():
    with pytest.raises(ConfigError, match="with the pattern '\\*attention\\*'") as info:
        factorize(_loaded(nn.Sequential(nn.Linear(8, 8))), Factorize(rank=1, layers="*attention*"), StepContext())
    assert "0" in info.value.hint


def test_structure_rebuilds_from_ranks():
    model = sizewise.load("zoo:lenet5").module
    apply_lowrank_structure(model, {"conv2": 7, "fc1": 30})
    assert lowrank_ranks(model) == {"conv2": 7, "fc1": 30}
    assert model.conv2.in_channels == 20 and model.fc1.out_features == 500
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_zoo_model_round_trips_and_int8_on_top(tmp_path):
    from sizewise.models.torch_quant import quantize_dynamic_int8

    torch.manual_seed(0)
    loaded = sizewise.load("zoo:lenet-300-100")
    x = loaded.example_inputs(3)
    factorize(loaded, Factorize(energy=0.6), StepContext())
    save_model(loaded, tmp_path / "f" / "model")
    manifest = json.loads((tmp_path / "f" / "model" / "sizewise-model.json").read_text())
    assert manifest["lowrank"] == lowrank_ranks(loaded.module) and set(manifest["lowrank"]) == {"fc1", "fc2", "fc3"}
    reloaded = sizewise.load(tmp_path / "f")
    assert torch.equal(reloaded.module(**x), loaded.module(**x))
    loaded.module = quantize_dynamic_int8(loaded.module)  # the factors are Linear layers: int8 applies to them
    save_model(loaded, tmp_path / "q" / "model")
    requant = sizewise.load(tmp_path / "q")
    assert lowrank_ranks(requant.module) == manifest["lowrank"]
    assert torch.equal(requant.module(**x), loaded.module(**x))


def test_hf_bert_round_trips_and_exports_to_onnx(tiny_bert_dir, tmp_path):
    import onnxruntime as ort

    from sizewise.models.convert import to_onnx

    loaded = sizewise.load(tiny_bert_dir)
    details = factorize(loaded, Factorize(rank=4, layers="*.dense"), StepContext())
    assert details["factorized"] == 7  # per layer attention.output, intermediate, output; plus the pooler
    save_model(loaded, tmp_path / "model")
    reloaded = sizewise.load(tmp_path)
    assert lowrank_ranks(reloaded.module) == lowrank_ranks(loaded.module)
    x = reloaded.example_inputs(2, 8)
    expected = loaded.module(**x).last_hidden_state
    assert torch.equal(reloaded.module(**x).last_hidden_state, expected)
    path = to_onnx(reloaded, tmp_path / "f.onnx", seq_len=8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in x.items()})[0]
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_head_pruned_then_factorized_bert_round_trips(tiny_bert_dir, tmp_path):
    from sizewise.compress.prune import HeadPrune
    from sizewise.compress.prune.transformer import heads

    loaded = sizewise.load(tiny_bert_dir)
    heads(loaded, HeadPrune(0.5), StepContext())
    factorize(loaded, Factorize(rank=2, layers="*attention.self.query"), StepContext())
    save_model(loaded, tmp_path / "model")
    reloaded = sizewise.load(tmp_path)
    assert reloaded.module.encoder.layer[0].attention.self.num_attention_heads == 2
    x = reloaded.example_inputs(2, 8)
    assert torch.equal(reloaded.module(**x).last_hidden_state, loaded.module(**x).last_hidden_state)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of rank, energy or target_params, got none"),
    ({"rank": 4, "energy": 0.9}, "got rank, energy"),
    ({"rank": 0}, "rank must be a positive integer, got 0"),
    ({"rank": 2.5}, "rank must be a positive integer"),
    ({"energy": 0.0}, r"energy must be in \(0, 1\]"),
    ({"energy": 1.5}, r"energy must be in \(0, 1\]"),
    ({"target_params": 1.0}, r"target_params must be in \(0, 1\)"),
    ({"energy": 0.9, "layers": ""}, "layers must be a non-empty name pattern"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Factorize(**kwargs)


def test_cli_factorizes_prints_ranks_and_rejects_bad_input(tmp_path, monkeypatch):
    import functools
    import importlib

    from typer.testing import CliRunner

    from sizewise.cli.app import app

    api = importlib.import_module("sizewise.measure.api")  # short timing: this checks the command, not the machine
    monkeypatch.setattr(api, "MeasureConfig", functools.partial(
        api.MeasureConfig, latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False))
    runner = CliRunner()
    result = runner.invoke(app, ["factorize", "zoo:digits-cnn", "--data", "digits", "--out", str(tmp_path / "f"),
                                 "--target-params", "0.3", "--finetune-epochs", "0"])
    assert result.exit_code == 0, result.output
    assert "low-rank layers" in result.output and "conv2" in result.output and "fc1" in result.output
    card = json.loads((tmp_path / "f" / "card.json").read_text())  # the run record: cards before and after, reloaded
    step = card["steps"][0]
    assert card["kind"] == "factorize" and step["method"] == "factorize" and step["train"] is None
    assert step["config"]["target_params"] == 0.3 and step["details"]["layers"]["fc1"]["factorized"]
    assert card["after"]["flops"]["total"] < 0.8 * card["before"]["flops"]["total"]
    assert card["after"]["params"]["total"] < card["before"]["params"]["total"]
    assert "accuracy" in card["after"]["metrics"]
    assert lowrank_ranks(sizewise.load(tmp_path / "f").module) == {
        n: r["rank"] for n, r in step["details"]["layers"].items() if r["factorized"]}
    bad = runner.invoke(app, ["factorize", "zoo:digits-cnn", "--data", "digits", "--out", str(tmp_path / "g"),
                              "--energy", "0.8", "--rank", "3"])
    assert bad.exit_code == 1 and bad.output.strip().startswith("error:") and "exactly one of" in bad.output
    assert "Traceback" not in bad.output
