"""The public API: what the README says it is, and the in-memory verbs on a user's own nn.Module."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sizewise
from sizewise.core.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_table() -> dict[str, str]:
    text = README.read_text()
    section = text.split("### The Python API at a glance", 1)[1].split("###", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| (function|class):", section, flags=re.M))


def test_every_public_name_is_what_the_readme_says():
    table = _readme_table()
    public = set(sizewise.__all__) - {"__version__"}
    assert set(table) == public, f"README lists {sorted(set(table) ^ public)} differently from __all__"
    for name, kind in table.items():
        value = getattr(sizewise, name)
        assert (kind == "class") == isinstance(value, type), f"sizewise.{name} should be a {kind}"
        assert callable(value)


def test_verbs_that_share_a_subpackage_name_stay_functions():
    code = ("import sizewise.measure, sizewise.train, sizewise.estimate; from sizewise.measure import MeasureConfig;"
            "import sizewise, types; "
            "assert all(isinstance(getattr(sizewise, n), types.FunctionType) for n in ('measure','train','estimate'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_classes_match_the_registry():
    from sizewise.compress.registry import get_method

    for name in sizewise.list_methods():
        method = get_method(name)
        exported = [n for n in sizewise.__all__ if getattr(sizewise, n, None) is method.config]
        assert exported, f"the config of method '{name}' ({method.config.__name__}) is not exported at the top level"


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def test_wrap_reads_the_forward_argument_and_example_shape():
    model = sizewise.wrap(_mlp(), torch.randn(3, 1, 8, 8), task="image-classification")
    assert model.inputs.name == "input" and model.inputs.shape == (1, 8, 8)
    assert model.example_inputs(5)["input"].shape == (5, 1, 8, 8)


def test_wrap_refuses_inputs_the_module_rejects():
    with pytest.raises(ConfigError, match="does not run on example inputs of shape"):
        sizewise.wrap(_mlp(), torch.randn(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="unknown task"):
        sizewise.wrap(_mlp(), torch.randn(1, 1, 8, 8), task="regression-of-everything")


def test_apply_prunes_in_memory_and_leaves_the_input_alone():
    model = sizewise.wrap(_mlp(), torch.randn(1, 1, 8, 8), task="image-classification")
    original = [p.detach().clone() for p in model.module.parameters()]
    pruned = sizewise.apply(model, sizewise.MagnitudePrune(sparsity=0.5, scope="global"))
    weights = [m.weight for m in pruned.module.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert zeros == total // 2  # exactly the requested sparsity over the prunable weights
    assert all(torch.equal(a, b) for a, b in zip(original, model.module.parameters()))
    assert pruned.module(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_apply_int8_returns_a_model_that_runs_close_to_float():
    model = sizewise.wrap(_mlp(), torch.randn(1, 1, 8, 8), task="image-classification")
    x = torch.rand(16, 1, 8, 8)
    for config in (sizewise.Int8Dynamic(runtime="torch"), sizewise.Int8Dynamic()):
        q = sizewise.apply(model, config)
        with torch.no_grad():
            ref, got = model.module(x), q.module(input=x)
        got = got if isinstance(got, torch.Tensor) else got[0]
        assert got.shape == ref.shape
        assert float((got - ref).abs().max() / ref.abs().max()) < 0.05, config


def test_apply_a_method_that_needs_data_without_data_says_so():
    model = sizewise.wrap(_mlp(), torch.randn(1, 1, 8, 8), task="image-classification")
    with pytest.raises(ConfigError, match="int8-static needs data"):
        sizewise.apply(model, sizewise.Int8Static())


def test_apply_refuses_a_bare_module_and_unknown_configs():
    with pytest.raises(ConfigError, match="sizewise.wrap"):
        sizewise.apply(_mlp(), sizewise.MagnitudePrune(0.5))
    model = sizewise.wrap(_mlp(), torch.randn(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="not the config of a registered method"):
        sizewise.apply(model, object())
