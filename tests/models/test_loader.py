import pytest
import torch
from safetensors.torch import save_file

import sizewise
from sizewise.core.errors import InputShapeError, ModelReferenceError, UnsafePickleError
from sizewise.models.artifact import save_model


def outputs(loaded, batch=2):
    with torch.no_grad():
        out = loaded.module(**loaded.example_inputs(batch, 8))
    return getattr(out, "last_hidden_state", out)


def test_zoo_reference():
    loaded = sizewise.load("zoo:lenet5")
    assert loaded.source == "zoo" and loaded.task == "image-classification" and loaded.num_classes == 10
    assert loaded.example_inputs(3)["x"].shape == (3, 1, 28, 28)


def test_factory_reference_uses_input_shape_attribute():
    loaded = sizewise.load("tiny_models:tiny_mlp")
    assert loaded.source == "factory" and loaded.inputs.shape == (1, 8, 8)
    assert outputs(loaded).shape == (2, 10)


@pytest.mark.parametrize("ref, message", [
    ("tiny_models:broken", "factory 'tiny_models:broken' raised RuntimeError: weights server unreachable"),
    ("tiny_models:not_a_module", "returned dict, not a torch.nn.Module"),
    ("tiny_models:missing", "cannot import factory 'tiny_models:missing'"),
    ("zoo:lenet6", "unknown zoo model 'lenet6'"),
    ("no/such/model.onnx", "no such file or directory"),
    ("", "empty model reference"),
    ("gibberish", "cannot understand the model reference 'gibberish'"),
])
def test_bad_references_say_what_is_wrong(ref, message):
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(ref)
    assert message in str(info.value)


def test_state_dict_safetensors_with_arch(tmp_path):
    source = sizewise.load("zoo:lenet-300-100")
    save_file(source.module.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ModelReferenceError, match="pass --arch"):
        sizewise.load(tmp_path / "w.safetensors")
    loaded = sizewise.load(tmp_path / "w.safetensors", arch="zoo:lenet-300-100")
    assert loaded.source == "state-dict"
    assert torch.equal(outputs(loaded), outputs(source))
    with pytest.raises(ModelReferenceError, match="do not fit zoo:lenet5"):
        sizewise.load(tmp_path / "w.safetensors", arch="zoo:lenet5")


def test_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(sizewise.load("zoo:lenet5").module.state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelReferenceError, match="truncated or corrupt"):
        sizewise.load(path, arch="zoo:lenet5")


def test_pt_state_dict_loads_with_weights_only(tmp_path):
    source = sizewise.load("zoo:lenet5")
    torch.save({"state_dict": source.module.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    loaded = sizewise.load(tmp_path / "ckpt.pt", arch="zoo:lenet5")
    assert torch.equal(outputs(loaded), outputs(source))


def test_whole_model_pickle_is_refused_unless_trusted(tmp_path):
    import tiny_models

    torch.save(tiny_models.tiny_mlp(), tmp_path / "model.pt")
    with pytest.raises(UnsafePickleError) as info:
        sizewise.load(tmp_path / "model.pt")
    assert "arbitrary code" in info.value.message and "--trust-pickle" in info.value.hint
    loaded = sizewise.load(tmp_path / "model.pt", trust_pickle=True)
    assert loaded.source == "pickle" and outputs(loaded).shape == (2, 10)


def test_run_directory_round_trip(tmp_path):
    source = sizewise.load("zoo:digits-cnn")
    save_model(source, tmp_path / "run" / "model")
    for ref in (tmp_path / "run", tmp_path / "run" / "model"):
        loaded = sizewise.load(ref)
        assert loaded.source == "run-dir" and loaded.task == "image-classification"
        assert torch.equal(outputs(loaded), outputs(source))


def test_onnx_file_runs_on_onnxruntime(tmp_path):
    from sizewise.models.convert import to_onnx

    source = sizewise.load("zoo:resnet20")
    path = to_onnx(source, tmp_path / "r.onnx")
    loaded = sizewise.load(path)
    assert loaded.is_onnx and loaded.inputs.onnx_inputs[0][0] == "x"
    torch.testing.assert_close(outputs(loaded, 3), outputs(source, 3), atol=1e-4, rtol=1e-4)


def test_truncated_onnx_is_refused(tmp_path):
    from sizewise.models.convert import to_onnx

    path = to_onnx(sizewise.load("zoo:lenet5"), tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelReferenceError, match="onnxruntime cannot load"):
        sizewise.load(path)


def test_input_shape_the_model_rejects(fast_measure):
    loaded = sizewise.load("zoo:lenet5", input_shape=(3, 32, 32))
    with pytest.raises(InputShapeError, match=r"rejected inputs \{'x': \(1, 3, 32, 32\)\}"):
        sizewise.measure(loaded, fast_measure)


def test_unknown_input_shape_asks_for_it(fast_measure):
    with pytest.raises(InputShapeError, match="--input-shape"):
        sizewise.measure(sizewise.load("tiny_models:no_shape"), fast_measure)


def test_huggingface_directory(tiny_bert_dir):
    loaded = sizewise.load(tiny_bert_dir)
    assert loaded.source == "huggingface" and loaded.task == "feature-extraction"
    inputs = loaded.example_inputs(2, 12)
    assert inputs["input_ids"].shape == (2, 12) and int(inputs["attention_mask"].min()) == 1
    assert outputs(loaded).shape[-1] == 32


def test_huggingface_run_directory_round_trip(tiny_bert_dir, tmp_path):
    source = sizewise.load(tiny_bert_dir)
    save_model(source, tmp_path / "model")
    loaded = sizewise.load(tmp_path)
    assert loaded.source == "run-dir"
    torch.testing.assert_close(outputs(loaded), outputs(source))
