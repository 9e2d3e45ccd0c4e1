"""torch int8 through torchao: every Linear quantized, outputs close to fp32, stored and reloaded exactly, old torch.ao
artifacts still load, and no torch.ao deprecation on the way."""

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import sizewise
from sizewise.core.errors import ModelReferenceError
from sizewise.models.sparse_format import load_sparse, save_sparse
from sizewise.models.torch_quant import (
    dynamic_linear_modules,
    load_quantized_state,
    quantize_dynamic_int8,
    quantized_state,
)

pytest.importorskip("torchao")


def tiny_mlp() -> nn.Module:
    import tiny_models  # tests/helpers, on the path through conftest

    return tiny_models.tiny_mlp()


def _relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).detach().norm() / ref.detach().norm())


def _same_settings(a, b) -> None:
    """Two torchao Int8Tensors are laid out and run the same way (block per row, activation quantization)."""
    assert type(a) is type(b) and a.block_size == b.block_size and a.dtype == b.dtype
    assert a.act_quant_kwargs == b.act_quant_kwargs and a.reduce_range == b.reduce_range
    assert a.scale.shape == b.scale.shape and a.scale.dtype == b.scale.dtype


def _same_int8(a, b) -> None:
    """Two torchao Int8Tensors hold the same integers, scales and settings, bit for bit."""
    _same_settings(a, b)
    assert torch.equal(a.qdata, b.qdata) and a.qdata.dtype == torch.int8
    assert torch.equal(a.scale, b.scale)
    assert torch.equal(a.zero_point, b.zero_point)


def _quantized_fresh(layer: nn.Linear):
    """What ``quantize_`` itself makes of a Linear shaped like ``layer``."""
    return quantize_dynamic_int8(nn.Linear(layer.in_features, layer.out_features)).weight


def test_every_linear_is_int8_and_the_mlp_stays_close_to_fp32():
    torch.manual_seed(0)
    model, x = tiny_mlp(), torch.randn(32, 1, 8, 8)
    ref = model(x)
    quantize_dynamic_int8(model)
    assert sorted(dynamic_linear_modules(model)) == ["fc1", "fc2"]
    assert model.fc1.weight.qdata.dtype == torch.int8 and model.fc1.weight.scale.shape == (16, 1)  # one scale a row
    assert _relative_error(model(x), ref) < 0.02


def test_tiny_bert_has_every_linear_int8_and_stays_close_to_fp32(tiny_bert_dir):
    loaded = sizewise.load(tiny_bert_dir)
    x = loaded.example_inputs(2, 8)
    ref = loaded.module(**x).last_hidden_state
    linears = {n for n, m in loaded.module.named_modules() if isinstance(m, nn.Linear)}
    quantize_dynamic_int8(loaded.module)
    assert set(dynamic_linear_modules(loaded.module)) == linears and len(linears) == 2 * 6 + 1  # q k v o in out, pooler
    assert _relative_error(loaded.module(**x).last_hidden_state, ref) < 0.05


def test_state_round_trips_bit_for_bit(tmp_path):
    model = quantize_dynamic_int8(tiny_mlp())
    state = quantized_state(model)
    assert state["fc1.weight_int8"].dtype == torch.int8 and state["fc1.weight_scale"].dtype == torch.float32
    assert all(type(v) is torch.Tensor for v in state.values())  # plain tensors: what safetensors can hold
    save_sparse(state, tmp_path / "w.safetensors")
    reloaded = load_quantized_state(tiny_mlp(), load_sparse(tmp_path / "w.safetensors"))
    for name in ("fc1", "fc2"):
        _same_int8(getattr(reloaded, name).weight, getattr(model, name).weight)
        assert torch.equal(getattr(reloaded, name).bias, getattr(model, name).bias)
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(reloaded(x), model(x))


def test_a_bare_linear_round_trips():
    model = quantize_dynamic_int8(nn.Linear(12, 5))
    assert list(dynamic_linear_modules(model)) == [""]
    state = quantized_state(model)
    assert set(state) == {"weight_int8", "weight_scale", "bias"}
    reloaded = load_quantized_state(nn.Linear(12, 5), state)
    x = torch.randn(3, 12)
    assert torch.equal(reloaded(x), model(x))


def _old_format_state(zero_point: int = 0) -> tuple[dict[str, torch.Tensor], float]:
    """What sizewise wrote before torchao: torch.ao per-tensor int8 values, a float64 scale and a zero point."""
    g = torch.Generator().manual_seed(1)
    scale = 0.0123456789012345
    state = {"fc1.bias": torch.randn(16, generator=g), "fc2.bias": torch.randn(10, generator=g)}
    for name, shape in (("fc1", (16, 64)), ("fc2", (10, 16))):
        state[f"{name}.weight_int8"] = torch.randint(-127, 128, shape, dtype=torch.int8, generator=g)
        state[f"{name}.weight_scale"] = torch.tensor([scale], dtype=torch.float64)
        state[f"{name}.weight_zero_point"] = torch.tensor([zero_point], dtype=torch.int64)
    return state, scale


def test_old_torch_ao_artifacts_load_with_their_exact_integers(tmp_path):
    state, scale = _old_format_state()
    save_sparse(state, tmp_path / "old.safetensors")
    model = load_quantized_state(tiny_mlp(), load_sparse(tmp_path / "old.safetensors"))
    assert sorted(dynamic_linear_modules(model)) == ["fc1", "fc2"]
    w = model.fc1.weight
    assert torch.equal(w.qdata, state["fc1.weight_int8"])
    assert torch.equal(w.scale, torch.full((16, 1), scale, dtype=torch.float32))  # per-tensor, broadcast to each row
    assert torch.equal(w.zero_point, torch.zeros(16, 1, dtype=torch.int8))
    assert torch.equal(model.fc1.bias, state["fc1.bias"])
    _same_settings(w, _quantized_fresh(model.fc1))
    # the model computes with exactly those weights (up to the int8 quantization of the activations)
    dequantized = state["fc1.weight_int8"].float() * torch.tensor(scale, dtype=torch.float32)
    assert torch.equal(w.dequantize(), dequantized)
    x = torch.randn(16, 64)
    assert _relative_error(model.fc1(x), x @ dequantized.T + state["fc1.bias"]) < 0.02


def test_an_old_torch_ao_run_directory_still_loads(tmp_path):
    import json

    float_model = sizewise.load("tiny_models:tiny_mlp")
    sizewise.save_model(float_model, tmp_path / "model")  # then made into what the torch.ao version wrote
    state, scale = _old_format_state()
    save_sparse(state, tmp_path / "model" / "model.safetensors")
    manifest_path = tmp_path / "model" / "sizewise-model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["torch_quantization"] = "torch.ao dynamic int8 Linear"
    manifest_path.write_text(json.dumps(manifest))
    reloaded = sizewise.load(tmp_path)
    assert sorted(dynamic_linear_modules(reloaded.module)) == ["fc1", "fc2"]
    assert torch.equal(reloaded.module.fc2.weight.qdata, state["fc2.weight_int8"])
    x = reloaded.example_inputs(4)
    expected = load_quantized_state(tiny_mlp(), state)(*x.values())
    assert torch.equal(reloaded.module(**x), expected)


def test_a_quantized_model_pickles_for_the_memory_measurement_child_process():
    import pickle

    model = quantize_dynamic_int8(tiny_mlp())
    x = torch.randn(4, 1, 8, 8)
    for m in (model, load_quantized_state(tiny_mlp(), quantized_state(model))):
        assert torch.equal(pickle.loads(pickle.dumps(m))(x), model(x))


def test_old_artifacts_with_a_zero_point_are_requantized_from_their_float_values():
    state, scale = _old_format_state(zero_point=3)
    model = load_quantized_state(tiny_mlp(), state)
    exact = (state["fc1.weight_int8"].double() - 3) * scale
    w = model.fc1.weight
    assert w.zero_point is None or not w.zero_point.any()  # symmetric again
    _same_settings(w, _quantized_fresh(model.fc1))
    assert torch.allclose(w.dequantize().double(), exact, atol=float(w.scale.max()) / 2 + 1e-6)


def test_loading_into_the_wrong_model_says_so():
    state = quantized_state(quantize_dynamic_int8(tiny_mlp()))
    with pytest.raises(ModelReferenceError, match="do not fit|is \\(16, 64\\)"):
        load_quantized_state(nn.Sequential(nn.Linear(64, 16)), state)


def test_zoo_model_int8_artifact_reloads_exactly(tmp_path):
    torch.manual_seed(0)
    loaded = sizewise.load("zoo:lenet-300-100")
    quantize_dynamic_int8(loaded.module)
    sizewise.save_model(loaded, tmp_path / "model")
    reloaded = sizewise.load(tmp_path)
    assert sorted(dynamic_linear_modules(reloaded.module)) == sorted(dynamic_linear_modules(loaded.module)) != []
    for name, layer in dynamic_linear_modules(loaded.module).items():
        _same_int8(reloaded.module.get_submodule(name).weight, layer.weight)
    x = loaded.example_inputs(3)
    assert torch.equal(reloaded.module(**x), loaded.module(**x))


def test_the_torch_int8_path_raises_no_torch_ao_deprecation(tiny_bert_dir, tmp_path):
    from sizewise.compress.quantize import Int8Dynamic
    from sizewise.compress.quantize.torch_backend import quantize_torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantized, details = quantize_torch(sizewise.load(tiny_bert_dir), Int8Dynamic(runtime="torch"))
        quantized.module(**quantized.example_inputs(1, 8))
        sizewise.save_model(quantized, tmp_path / "model")
        sizewise.load(tmp_path).module(**quantized.example_inputs(1, 8))
    assert details["quantized_layers"] and "torchao" in details["kernel"]
    assert not any(type(m).__module__.startswith("torch.ao") for m in quantized.module.modules())
    about_torch_ao = [str(w.message) for w in caught if "torch.ao" in str(w.message) or "torch/ao" in w.filename]
    assert about_torch_ao == []


def test_torchao_is_imported_only_when_quantizing():
    code = ("import sys, torch, sizewise\n"
            "from sizewise.models.torch_quant import dynamic_linear_modules\n"
            "from sizewise.compress.quantize import torch_backend\n"
            "assert dynamic_linear_modules(torch.nn.Linear(2, 2)) == {}\n"
            "print('torchao' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
