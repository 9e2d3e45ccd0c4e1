"""Parameter counts: exact on the meta device where transformers knows the model, labelled formula otherwise."""

import json
import subprocess
import sys

import pytest

from sizewise.core.errors import ConfigError, ModelReferenceError
from sizewise.api import estimate  # the API passes the model loader, for references that are not presets
from sizewise.estimate import PRESETS
from sizewise.estimate.params import resolve_model

REQUIRED_PRESETS = ["gpt3-175b", "gpt2", "bert-base-uncased", "bert-large-uncased", "t5-base", "llama-2-7b",
                    "llama-2-70b", "mobilenet-v2", "resnet50", "minilm"]

# counts of the released checkpoints (model cards / torchvision docs); the meta-device build must reproduce them exactly
EXACT = {
    "bert-base-uncased": 109_482_240,
    "bert-large-uncased": 335_141_888,
    "gpt2": 124_439_808,
    "t5-base": 222_903_552,
    "llama-2-7b": 6_738_415_616,
    "llama-2-70b": 68_976_648_192,
    "minilm": 22_713_216,
    "mobilenet-v2": 3_504_872,
    "resnet50": 25_557_032,
}


def test_required_presets_exist():
    assert set(REQUIRED_PRESETS) <= set(PRESETS)


@pytest.mark.parametrize("name,count", sorted(EXACT.items()))
def test_preset_parameter_counts_are_exact(name, count):
    resolved = resolve_model(name)
    assert resolved.params.total == count
    expected_method = "published" if resolved.preset.hf_config is None else "meta-device"
    assert resolved.params.method == expected_method


def test_gpt3_has_175_billion_parameters_within_one_percent():
    params = resolve_model("gpt3-175b").params
    assert params.method == "meta-device"
    assert params.total == pytest.approx(175e9, rel=0.01)
    # the token (50257 x 12288) and position (2048 x 12288) tables are the only embeddings; the head is tied
    assert params.embedding == 50257 * 12288 + 2048 * 12288
    assert params.non_embedding == params.total - params.embedding


def test_untied_llama_head_counts_as_embedding():
    params = resolve_model("llama-2-7b").params
    assert params.embedding == 2 * 32000 * 4096  # input table + untied output head


def test_bert_base_weight_bytes_are_four_per_parameter_at_fp32():
    e = estimate("bert-base-uncased")
    assert e.memory.weights_bytes == {"fp32": 4 * 109_482_240, "fp16": 2 * 109_482_240,
                                      "int8": 109_482_240, "int4": 109_482_240 // 2}


def test_config_json_file_and_directory(tmp_path):
    cfg = dict(PRESETS["bert-base-uncased"].hf_config)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert resolve_model(str(tmp_path)).params.total == 109_482_240
    assert resolve_model(str(tmp_path / "config.json")).params.total == 109_482_240


def test_unknown_architecture_falls_back_to_formula_and_says_so(tmp_path):
    # a Llama-2-7B-shaped config under a model_type transformers has never heard of
    cfg = {**PRESETS["llama-2-7b"].hf_config, "model_type": "mystery-lm", "architectures": ["MysteryForCausalLM"]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    e = estimate(str(path))
    assert e.params.method == "formula"
    assert "formula" in e.params.detail
    assert any("parameters by formula" in n and "mystery-lm" in n for n in e.notes)
    # Llama has no biases or position tables, so the formula is exact for it
    assert e.params.total == EXACT["llama-2-7b"]
    assert e.training.flops == pytest.approx(6 * EXACT["llama-2-7b"] * 20 * EXACT["llama-2-7b"])


def test_formula_for_gpt2_shape_is_close_but_labelled(tmp_path):
    cfg = {**PRESETS["gpt2"].hf_config, "model_type": "not-gpt2"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    params = resolve_model(str(path)).params
    assert params.method == "formula"
    # biases and the 1024 x 768 position table are left out: within 1% of the exact 124,439,808
    assert params.total == pytest.approx(EXACT["gpt2"], rel=0.01)
    assert params.total < EXACT["gpt2"]


def test_unknown_architecture_without_sizes_is_one_clear_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "mystery-lm", "hidden_size": 64}))
    with pytest.raises(ConfigError, match=r"cannot count parameters of model_type 'mystery-lm'.*num_hidden_layers"):
        resolve_model(str(path))


def test_missing_config_file_is_a_reference_error(tmp_path):
    with pytest.raises(ModelReferenceError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelReferenceError, match="cannot read"):
        resolve_model(str(bad))


def test_import_is_light():
    code = "import sys, sizewise.estimate; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_mistyped_preset_gets_a_suggestion():
    with pytest.raises(ModelReferenceError) as info:
        resolve_model("gpt3")
    assert "did you mean the preset 'gpt3-175b'?" in info.value.hint


def test_any_loadable_reference_is_counted_exactly():
    pytest.importorskip("sizewise.models.loader")
    from sizewise.models.loader import load

    module = load("zoo:lenet5").module
    e = estimate("zoo:lenet5")
    assert e.params.method == "loaded"
    assert e.params.total == sum(p.numel() for p in module.parameters())
    assert e.memory.weights_bytes["fp32"] == 4 * e.params.total
    assert e.inference.flops_per_token is None  # no layer sizes to apply the transformer formulas to
