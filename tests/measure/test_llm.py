"""The causal-LM section of the card: KV cache, perplexity, tokens/s, roofline, on tiny random GPT-2 and Llama models
built here with an offline word-level tokenizer (every word of SENTENCES is one token)."""

import copy
import json
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import sizewise  # noqa: E402
from sizewise.core.errors import ConfigError, DataError  # noqa: E402
from sizewise.data.dataset import Dataset, Split  # noqa: E402
from sizewise.measure import MeasureConfig, ModelCard  # noqa: E402
from sizewise.measure import energy as energy_module  # noqa: E402
from sizewise.measure.llm import (  # noqa: E402
    LLMConfig,
    _Generator,
    _energy_step,
    cache_length,
    cache_tensors,
    kv_cache_stats,
    measure_llm,
    measure_read_bandwidth,
)
from sizewise.models.loaded import InputSpec, LoadedModel  # noqa: E402
from sizewise.tasks.perplexity import PerplexityConfig, perplexity, sliding_window_nll  # noqa: E402

SENTENCES = ["large models cost money energy and carbon", "the cat sat on the mat", "most teams cannot deploy them",
             "pruning and quantization make models smaller and faster"]
VOCAB = 100  # the models' vocabulary (the tokenizer uses the first few ids of it)
FAST_LLM = LLMConfig(prompt_tokens=8, new_tokens=5, batch_size=3, runs=3, warmup=1,
                     bandwidth_buffer_bytes=8 * 2**20, energy_seconds=0.05,
                     perplexity=PerplexityConfig(context=16, stride=8))


def _tokenizer(with_eos: bool = True):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["<unk>", "<eos>"] if with_eos else ["<unk>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=specials))
    extra = {"eos_token": "<eos>", "pad_token": "<eos>"} if with_eos else {"pad_token": "<unk>"}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **extra)


@pytest.fixture(scope="module")
def tokenizer():
    return _tokenizer()


def _gpt2(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=64,
                                     bos_token_id=1, eos_token_id=1)
    return transformers.GPT2LMHeadModel(config).eval()


def _llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, vocab_size=VOCAB,
                                      max_position_embeddings=64, bos_token_id=1, eos_token_id=1,
                                      pad_token_id=1)
    return transformers.LlamaForCausalLM(config).eval()


BUILDERS = {"gpt2": _gpt2, "llama": _llama}


def _loaded(module, tokenizer, name="tiny") -> LoadedModel:
    return LoadedModel(module=module, inputs=InputSpec(kind="tokens", tokenizer=tokenizer, default_seq_len=16),
                       reference=name, source="test", task="causal-lm", metadata={"max_seq_len": 64})


def _text_dataset(lines: list[str]) -> Dataset:
    split = Split(list(lines), np.zeros(len(lines), dtype=np.int64))
    return Dataset(name="tiny-text", task="causal-lm", splits={"validation": split, "test": split})


@pytest.fixture(scope="module")
def gpt2_stats(tokenizer):
    loaded = _loaded(_gpt2(), tokenizer)
    return measure_llm(loaded, FAST_LLM, threads=1, texts=SENTENCES * 3, split="validation")


# ------------------------------------------------------------------------------------------------ KV cache

@pytest.mark.parametrize("arch, kv_heads", [("gpt2", 4), ("llama", 2)])
def test_kv_cache_bytes_equal_the_formula_and_the_models_own_cache(arch, kv_heads):
    model = BUILDERS[arch]()
    stats = kv_cache_stats(model.config, context=13, batch=3, bytes_per_element=4)
    # 2 (K, V) x 2 layers x kv_heads x head_dim 32/4 x 13 tokens x batch 3 x 4 bytes (float32)
    assert stats.bytes == 2 * 2 * kv_heads * 8 * 13 * 3 * 4
    assert (stats.layers, stats.kv_heads, stats.attention_heads, stats.head_dim) == (2, kv_heads, 4, 8)
    with torch.inference_mode():
        out = model(input_ids=torch.randint(0, VOCAB, (3, 13)), use_cache=True)
    cache = _Generator._cache_of(out)
    assert sum(t.numel() * t.element_size() for t in cache_tensors(cache)) == stats.bytes


def test_generation_reports_the_cache_it_actually_held(gpt2_stats):
    for g in gpt2_stats.generation:
        kv = g.kv_cache
        assert kv.context_tokens == 8 + 5 - 1  # prompt + tokens 1..N-1: what the last step attended to
        assert kv.measured_bytes == kv.bytes == 2 * 2 * 4 * 8 * 12 * g.batch_size * 4
        assert g.bytes_per_step == gpt2_stats.weights_bytes + kv.bytes


def test_weights_bytes_count_a_tied_matrix_once(gpt2_stats):
    model = _gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    unique = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    assert gpt2_stats.weights_bytes == unique * 4


# ------------------------------------------------------------------------------------------------ perplexity

@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_model_that_predicts_uniformly_has_the_vocabulary_size_as_perplexity(arch, tokenizer):
    model = BUILDERS[arch]()
    with torch.no_grad():  # bias-free output projection of zeros -> equal logits for every token
        model.get_output_embeddings().weight.zero_()
    assert model.get_output_embeddings().bias is None
    result = perplexity(model, tokenizer, SENTENCES * 4, PerplexityConfig(context=16, stride=8))
    assert result.token_perplexity == pytest.approx(VOCAB, abs=1e-4)
    # one token per word here, and the prefix lets the first one be scored: the word level agrees
    assert result.tokens_scored == result.text_tokens == result.words
    assert result.word_perplexity == pytest.approx(VOCAB, abs=1e-4)
    assert result.bits_per_byte == pytest.approx(result.tokens_scored * math.log2(VOCAB) / result.utf8_bytes)


def test_the_sliding_window_scores_exactly_the_tokens_it_says(tokenizer):
    words = " ".join(SENTENCES).split()
    text = " ".join((words * 3)[:40])  # 40 known words = 40 tokens
    model = _gpt2()
    result = perplexity(model, tokenizer, [text], PerplexityConfig(context=16, stride=8))
    # <eos> + 40 tokens = 41; windows [0,16) [8,24) [16,32) [24,40) [32,41) score 15 + 8 + 8 + 8 + 1 = all 40
    assert (result.text_tokens, result.tokens_scored, result.windows) == (40, 40, 5)
    assert result.prefix_token == "<eos>"
    # stride = context: each later window's first token has no context inside it and goes unscored
    disjoint = perplexity(model, tokenizer, [text], PerplexityConfig(context=16, stride=16))
    assert (disjoint.tokens_scored, disjoint.windows) == (41 - 3, 3)
    # a tokenizer with neither BOS nor EOS: nothing is put first, so the text's first token is never scored
    bare = perplexity(model, _tokenizer(with_eos=False), [text], PerplexityConfig(context=16, stride=8))
    assert (bare.tokens_scored, bare.prefix_token) == (39, None)


def test_sliding_window_nll_matches_the_hugging_face_recipe(tokenizer):
    """The recipe of huggingface.co/docs/transformers/perplexity, with labels=-100 masking and the model's own loss;
    its token count is the labels left after the shift (the page's `valid - batch` miscounts windows after the
    first, whose first kept label is not at position 0)."""
    model = _gpt2(seed=3)
    ids = torch.randint(0, VOCAB, (1, 50), generator=torch.Generator().manual_seed(0))
    context, stride = 16, 6
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, ids.size(1), stride):
            end = min(begin + context, ids.size(1))
            trg_len = end - prev_end
            window = ids[:, begin:end]
            target = window.clone()
            target[:, :-trg_len] = -100
            loss = model(window, labels=target).loss
            scored = int((target[:, 1:] != -100).sum())
            nll_sum += float(loss) * scored
            n_tokens += scored
            prev_end = end
            if end == ids.size(1):
                break
    nll, scored, _ = sliding_window_nll(model, ids[0].tolist(), context, stride)
    assert scored == n_tokens == 49
    assert nll == pytest.approx(nll_sum, rel=1e-5)


def test_word_level_perplexity_and_bits_per_byte_follow_from_the_same_nll(tokenizer):
    lines = ["the cat  sat on the mat", "café models cost money", "most teams\tcannot deploy them"]
    result = perplexity(_llama(), tokenizer, lines, PerplexityConfig(context=8, stride=4))
    text = "\n".join(lines)  # the lines of a file, put back together
    assert result.words == len(text.split()) == 15 and result.utf8_bytes == len(text.encode("utf-8"))
    assert result.word_perplexity == pytest.approx(math.exp(result.nll_sum_nats / 15))
    assert result.token_perplexity == pytest.approx(math.exp(result.nll_sum_nats / result.tokens_scored))
    assert result.bits_per_byte == pytest.approx(result.nll_sum_nats / math.log(2) / result.utf8_bytes)


def test_max_tokens_cuts_the_text_and_says_so(tokenizer):
    lines = ["the cat sat on the mat"] * 5  # 30 tokens
    result = perplexity(_gpt2(), tokenizer, lines, PerplexityConfig(context=16, stride=8, max_tokens=10))
    assert result.truncated and result.text_tokens == result.tokens_scored == 10
    covered = "the cat sat on the mat\nthe cat sat on"  # the text of the first 10 tokens
    assert result.words == 10 and result.utf8_bytes == len(covered.encode())
    whole = perplexity(_gpt2(), tokenizer, lines, PerplexityConfig(context=16, stride=8, max_tokens=100))
    assert not whole.truncated and whole.text_tokens == 30


# ------------------------------------------------------------------------------------------------ speed

def test_decode_and_prefill_speeds_are_measured_per_batch(gpt2_stats):
    g1, g3 = gpt2_stats.generation
    assert (g1.batch_size, g3.batch_size) == (1, 3)
    for g in (g1, g3):
        assert g.decode.tokens_per_s > 0 and g.prefill.tokens_per_s > 0
        assert 0 < g.ttft_p50_ms < g.generation_p50_ms  # the first token comes before the last
        assert g.decode.calls == 3 * (5 - 1)  # every decode step of every timed run
        assert g.decode.tokens_per_call == g.batch_size and g.prefill.tokens_per_call == g.batch_size * 8
        assert g.decode.tokens_per_s == pytest.approx(g.batch_size / (g.decode.p50_ms / 1e3))
        assert g.decode.ci95_p50_ms[0] <= g.decode.p50_ms <= g.decode.ci95_p50_ms[1]
        assert g.ttft_ci95_ms[0] <= g.ttft_p50_ms <= g.ttft_ci95_ms[1]
        # the roofline: batch x bandwidth / bytes read per step, and decode's measured share of it
        assert g.roofline_tokens_per_s == pytest.approx(
            g.batch_size * gpt2_stats.bandwidth.bytes_per_s / g.bytes_per_step)
        assert g.roofline_fraction == pytest.approx(g.decode.tokens_per_s / g.roofline_tokens_per_s)
        # energy per 1,000 generated tokens from the decode steps' CPU time (or a counter, where one reads)
        assert g.energy.joules_per_1k > 0 and g.energy.method in ("measured:rapl", "estimated:cpu-power-model")
        assert g.carbon.gco2e_per_1k == pytest.approx(g.energy.joules_per_1k / 3.6e6 * g.carbon.grid_gco2_per_kwh)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_greedy_loop_makes_the_tokens_generate_makes(arch, tokenizer):
    model = BUILDERS[arch](seed=1)
    ids = torch.randint(2, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        run = _Generator(model).run(ids, 6)
        expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, min_new_tokens=6,
                                  do_sample=False, pad_token_id=1)
    assert torch.equal(run.tokens, expected[:, 7:])
    assert len(run.step_ns) == 5 and cache_length(run.cache) == 7 + 6 - 1


def test_an_energy_counter_is_read_over_decode_steps_at_a_fixed_context(monkeypatch):
    model = _gpt2()
    gen = _Generator(model)
    with torch.inference_mode():
        run = gen.run(torch.randint(2, VOCAB, (2, 6)), 4)
        step = _energy_step(gen, run, batch=2)
        for _ in range(5):
            step()
    assert cache_length(run.cache) == 6 + 4 - 1  # each step's entry is cropped off again
    readings = iter(range(0, 10**12, 1_000_000))  # +1 J per read
    monkeypatch.setattr(energy_module, "rapl_energy_files", lambda: ["fake"])
    monkeypatch.setattr(energy_module, "_read_rapl_uj", lambda files: next(readings))
    stats = measure_llm(_loaded(model, _tokenizer()), LLMConfig(prompt_tokens=6, new_tokens=3, batch_size=1, runs=2,
                                                                bandwidth=False, energy_seconds=0.02), threads=1)
    (g,) = stats.generation
    assert g.energy.method == "measured:rapl" and g.energy.joules_per_1k > 0
    assert g.roofline_tokens_per_s is None and stats.bandwidth is None


def test_flops_per_token_formula_and_its_counted_cross_check(gpt2_stats):
    model = _gpt2()
    f = gpt2_stats.flops_per_token
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    assert f.non_embedding_params == sum(p.numel() for p in model.parameters()) - embeddings
    assert f.tied_unembedding_params == 32 * VOCAB  # GPT-2's output projection is its input embedding
    assert f.analytic == 2 * (f.non_embedding_params + 32 * VOCAB) + 2 * 2 * 2 * 8 * 32
    # the count of one forward over the 8-token prompt, per token: the formula's 2 x params also counts biases and
    # LayerNorm weights, which do no multiply-accumulate
    assert 0.9 < f.measured / f.analytic <= 1.0 and f.measured_coverage > 0.9


def test_bandwidth_buffer_is_several_times_the_last_level_cache(monkeypatch):
    from sizewise.measure import llm as llm_module

    monkeypatch.setattr(llm_module, "last_level_cache_bytes", lambda: 3 * 2**20)
    monkeypatch.setattr(llm_module, "MIN_BANDWIDTH_BUFFER", 2**20)
    stats = measure_read_bandwidth(threads=1, runs=3)
    assert stats.buffer_bytes == 4 * 3 * 2**20 and stats.last_level_cache_bytes == 3 * 2**20
    assert stats.bytes_per_s > 1e8 and stats.ci95_bytes_per_s[0] <= stats.bytes_per_s <= stats.ci95_bytes_per_s[1]
    assert "4.0x the 3 MiB last-level cache" in stats.method


# ------------------------------------------------------------------------------------------------ the card

@pytest.fixture(scope="module")
def llama_card(tokenizer):
    loaded = _loaded(_llama(), tokenizer, name="tiny-llama")
    config = MeasureConfig(latency_seconds=0.05, throughput_sweep=(1,), measure_memory=False, threads=1,
                           split="validation", llm=FAST_LLM)
    return sizewise.measure(loaded, config, dataset=_text_dataset(SENTENCES * 3))


def test_card_carries_the_llm_section_and_round_trips_through_json(llama_card, tmp_path):
    llm = llama_card.llm
    assert llm.perplexity.split == llama_card.metrics["split"] == "validation"
    assert llama_card.metrics["perplexity"] == llm.perplexity.token_perplexity
    assert llm.generation[1].kv_cache.kv_heads == 2 and llm.generation[1].kv_cache.attention_heads == 4
    # the memory section names the cache at batch 1: 2 x layers x kv_heads x head_dim x context x 4 bytes (fp32)
    kv = llm.generation[0].kv_cache
    assert llama_card.memory.kv_cache_context_tokens == kv.context_tokens
    assert llama_card.memory.kv_cache_bytes == 2 * kv.layers * 2 * kv.head_dim * kv.context_tokens * 1 * 4
    assert llama_card.memory.weights_bytes == llm.weights_bytes
    data = llama_card.to_dict()
    assert data["llm"]["perplexity"]["context_tokens"] == 16 and data["llm"]["perplexity"]["stride_tokens"] == 8
    assert ModelCard.from_dict(json.loads(json.dumps(data))) == llama_card
    assert ModelCard.from_json(llama_card.to_json(tmp_path / "card.json")) == llama_card


def test_a_card_from_before_the_llm_section_still_loads(llama_card):
    data = llama_card.to_dict()
    del data["llm"]
    assert ModelCard.from_dict(data).llm is None


def test_terminal_card_shows_the_llm_rows_with_units(llama_card):
    from rich.console import Console

    from sizewise.report.card_view import print_card

    console = Console(record=True, width=250)
    print_card(llama_card, console)
    text = console.export_text()
    for expected in ("per token", "per word", "bits/byte on the validation split", "context 16 tokens, stride 8",
                     "tok/s", "time to first token", "KV cache", "2 × 2 layers × 2 KV heads (of 4)",
                     "FLOPs / token", "decode roofline", "GB/s", "energy / 1k tokens (b1)"):
        assert expected in text, expected


def test_busy_machine_and_cut_text_are_warned_about(llama_card):
    from dataclasses import replace

    from sizewise.measure.api import _llm_warnings

    llm = llama_card.llm
    busy = replace(llm, generation=[replace(g, other_load_cores=100.0) for g in llm.generation],
                   bandwidth=replace(llm.bandwidth, other_load_cores=100.0),
                   perplexity=replace(llm.perplexity, truncated=True, max_tokens=10, text_tokens=10))
    text = " ".join(_llm_warnings(busy))
    assert "perplexity is on the first 10 tokens of the validation split only" in text
    assert "timed generation at batch 1 and generation at batch 3 and the read-bandwidth measurement" in text
    quiet = replace(llm, generation=[replace(g, other_load_cores=0.0) for g in llm.generation],
                    bandwidth=replace(llm.bandwidth, other_load_cores=0.0))
    assert _llm_warnings(quiet) == []


def test_perplexity_needs_a_text_dataset(tokenizer):
    loaded = _loaded(_gpt2(), tokenizer)
    images = Dataset(name="digits", task="image-classification",
                     splits={"test": Split(np.zeros((2, 1, 8, 8), dtype=np.float32), np.zeros(2))})
    with pytest.raises(DataError, match="perplexity needs plain text"):
        sizewise.measure(loaded, MeasureConfig(measure_memory=False, llm=FAST_LLM), dataset=images)


@pytest.mark.parametrize("make, message", [
    (lambda: LLMConfig(new_tokens=1), "new tokens must be an integer >= 2"),
    (lambda: LLMConfig(batch_size=0), "batch size must be a positive integer"),
    (lambda: PerplexityConfig(context=8, stride=9), r"stride \(9\) is longer than the context \(8\)"),
    (lambda: PerplexityConfig(max_tokens=0), "max_tokens must be a positive integer"),
])
def test_bad_llm_settings(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_prompt_and_new_tokens_must_fit_the_model(tokenizer):
    with pytest.raises(ConfigError, match=r"--prompt-len 60 \+ --new-tokens 10 is more than .* \(64 positions\)"):
        measure_llm(_loaded(_gpt2(), tokenizer), LLMConfig(prompt_tokens=60, new_tokens=10), threads=1)


# ------------------------------------------------------------------------------------------------ the CLI

def test_measure_cli_passes_the_llm_flags(monkeypatch, tmp_path, tokenizer):
    from typer.testing import CliRunner

    from sizewise.cli.app import app
    from sizewise.measure import llm as llm_module

    monkeypatch.setattr(llm_module, "MIN_BANDWIDTH_BUFFER", 8 * 2**20)  # keep the test's bandwidth buffer small
    monkeypatch.setattr(llm_module, "last_level_cache_bytes", lambda: None)
    loaded = _loaded(_gpt2(), tokenizer)
    import sizewise.data
    import sizewise.models.loader

    monkeypatch.setattr(sizewise.models.loader, "load", lambda *a, **k: loaded)
    monkeypatch.setattr(sizewise.data, "load_dataset", lambda *a, **k: _text_dataset(SENTENCES * 2))
    result = CliRunner().invoke(app, [
        "measure", "tiny", "--data", "text", "--split", "validation", "--no-memory", "--threads", "1",
        "--prompt-len", "6", "--new-tokens", "3", "--llm-batch", "2", "--context", "12", "--stride", "4",
        "--max-tokens", "20", "--json", str(tmp_path / "card.json")])
    assert result.exit_code == 0, result.output
    llm = json.loads((tmp_path / "card.json").read_text())["llm"]
    assert (llm["prompt_tokens"], llm["new_tokens"]) == (6, 3)
    assert [g["batch_size"] for g in llm["generation"]] == [1, 2]
    p = llm["perplexity"]
    assert (p["context_tokens"], p["stride_tokens"], p["tokens_scored"], p["truncated"], p["split"]) == \
        (12, 4, 20, True, "validation")
    assert "perplexity is on the first 20 tokens of the validation split only" in " ".join(result.output.split())


def test_measure_cli_on_a_saved_causal_lm_directory(monkeypatch, tmp_path, tokenizer):
    from typer.testing import CliRunner

    from sizewise.cli.app import app
    from sizewise.measure import llm as llm_module

    monkeypatch.setattr(llm_module, "MIN_BANDWIDTH_BUFFER", 8 * 2**20)
    monkeypatch.setattr(llm_module, "last_level_cache_bytes", lambda: None)

    _gpt2().save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    if sizewise.load(tmp_path / "gpt2").task != "causal-lm":
        pytest.skip("the loader does not read causal-LM directories yet")
    result = CliRunner().invoke(app, ["measure", str(tmp_path / "gpt2"), "--no-memory", "--threads", "1",
                                      "--prompt-len", "6", "--new-tokens", "3", "--llm-batch", "2",
                                      "--json", str(tmp_path / "card.json")])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["llm"]["generation"][0]["kv_cache"]["bytes"] == 2 * 2 * 4 * 8 * (6 + 3 - 1) * 4
