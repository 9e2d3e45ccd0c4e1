"""Validation against published figures: Brown et al. 2020, Patterson et al. 2021, Strubell et al. 2019."""

import pytest

from sizewise.core.serialize import to_dict
from sizewise.estimate import estimate

LBS_PER_KG = 2.20462262
G_PER_LB = 453.59237


@pytest.fixture(scope="module")
def gpt3():
    # Patterson et al. 2021, Table 4: GPT-3 on 10,000 V100 for 14.8 days, 330 W average, PUE 1.1, 0.429 kgCO2e/kWh
    return estimate("gpt3-175b", tokens=300e9, hardware="v100", devices=10_000, days=14.8, device_power_w=330,
                    pue=1.1, grid_intensity=429)


def test_gpt3_training_compute_matches_brown_table_d1(gpt3):
    assert gpt3.training.flops == pytest.approx(3.14e23, rel=0.02)


def test_gpt3_energy_and_co2_match_patterson(gpt3):
    assert gpt3.training.energy_mwh == pytest.approx(1287, rel=0.01)  # 1,289.4 from the stated inputs
    assert gpt3.training.co2e_tonnes == pytest.approx(552, rel=0.01)  # 553.1
    assert gpt3.training.hours == pytest.approx(14.8 * 24)


def test_gpt3_implied_utilization_is_plausible(gpt3):
    # 3.14e23 FLOP in 14.8 days on 10,000 x 125 TFLOP/s is about 20% of peak
    assert gpt3.training.mfu == pytest.approx(3.1429e23 / (10_000 * 125e12 * 14.8 * 86400), rel=1e-3)
    assert 0.15 < gpt3.training.mfu < 0.25


def test_strubell_bert_base_row():
    # Strubell et al. 2019, Table 3: BERT-base, V100 x 64, 79 h, 12,041.51 W for the whole system,
    # 1,507 kWh after PUE 1.58, 1,438 lbs CO2e at 0.954 lbs/kWh. Power is per device here, so divide by 64.
    e = estimate("bert-base-uncased", hardware="v100", devices=64, days=79 / 24, device_power_w=12041.51 / 64,
                 pue=1.58, grid_intensity=0.954 * G_PER_LB)
    assert e.training.energy_kwh == pytest.approx(1507, rel=0.01)  # 1,503.0 from the stated inputs
    assert e.training.co2e_kg * LBS_PER_KG == pytest.approx(1438, rel=0.01)  # 1,433.9


def test_training_memory_is_16_bytes_per_param_plus_activations(gpt3):
    n = gpt3.params.total
    assert gpt3.memory.training_state_bytes == 16 * n
    # Korthikanti et al. 2022: L * s * b * h * (34 + 5 a s / h) at batch 1, s = 2048
    act = 96 * 2048 * 1 * 12288 * (34 + 5 * 96 * 2048 / 12288)
    assert gpt3.memory.activation_bytes == pytest.approx(act, rel=1e-9)
    assert gpt3.memory.training_bytes == 16 * n + gpt3.memory.activation_bytes


def test_kv_cache_uses_grouped_query_heads():
    # Llama 2 70B: 80 layers, 8 key/value heads of 128 dims, 4096 tokens, batch 2, fp16
    e = estimate("llama-2-70b", batch=2)
    assert e.memory.kv_cache_bytes == 2 * 80 * 8 * 128 * 4096 * 2 * 2
    assert e.memory.inference_bytes["fp16"] == e.memory.weights_bytes["fp16"] + e.memory.kv_cache_bytes


def test_encoder_has_no_kv_cache_and_decoder_does():
    assert estimate("bert-base-uncased").memory.kv_cache_bytes == 0
    gpt2 = estimate("gpt2", seq_len=512)
    assert gpt2.memory.kv_cache_bytes == 2 * 12 * 12 * 64 * 512 * 1 * 2


def test_inference_flops_per_token_follow_kaplan(gpt3):
    p = gpt3.params
    expected = 2 * p.non_embedding + 2 * 12288 * 50257 + 2 * 96 * 2048 * 12288
    assert gpt3.inference.flops_per_token == pytest.approx(expected)
    assert gpt3.inference.flops_per_token == pytest.approx(2 * p.total, rel=0.03)


def test_time_from_mfu_and_cost_from_price():
    e = estimate("llama-2-7b", tokens=1e12, hardware="h100", devices=100, mfu=0.5, device_power_w=700, pue=1.2,
                 region="france", price_per_hour=2.5)
    flops = 6 * 6_738_415_616 * 1e12
    hours = flops / (100 * 989e12 * 0.5) / 3600
    assert e.training.hours == pytest.approx(hours)
    assert e.training.energy_kwh == pytest.approx(100 * 700 * hours * 1.2 / 1000)
    assert e.training.grid_intensity_g_per_kwh == 56
    assert e.training.co2e_kg == pytest.approx(e.training.energy_kwh * 0.056)
    assert e.training.cost_usd == pytest.approx(100 * hours * 2.5)


def test_defaults_are_labelled_constants():
    e = estimate("gpt2")
    names = {a.name: a for a in e.assumptions}
    assert names["hardware"].value == "a100-40gb"
    assert "A100" in names["a100-40gb peak FLOP/s"].source and names["a100-40gb peak FLOP/s"].value == 312e12
    assert names["a100-40gb price"].value == pytest.approx(4.10) and "AWS" in names["a100-40gb price"].source
    assert names["grid intensity (world)"].value == 481
    assert names["PUE"].value == 1.58
    assert e.training.mfu == 0.4
    assert e.training.tokens == 20 * 124_439_808  # no published token count for GPT-2: Chinchilla's 20 per param
    # default devices: the fewest A100-40GB that hold 16 bytes/param plus activations
    assert e.training.devices == 1 and e.training.min_devices_for_memory == 1
    assert estimate("gpt3-175b").training.devices == -(-estimate("gpt3-175b").memory.training_bytes // (40 * 2**30))


def test_fits_table():
    minilm = {row.target: row.fits for row in estimate("minilm").fits}
    assert all(minilm["phone"].values()) and all(minilm["raspberry-pi"].values())
    llama = {row.target: row.fits for row in estimate("llama-2-7b").fits}
    # 6.74e9 params: fp16 = 12.6 GiB x 1.2 = 15.1 GiB fits 16 GiB; fp32 (30 GiB) needs the 80 GB GPU
    assert llama["laptop"] == {"fp32": False, "fp16": True, "int8": True, "int4": True}
    assert llama["phone"] == {"fp32": False, "fp16": False, "int8": True, "int4": True}
    assert llama["gpu-24gb"]["fp16"] and not llama["gpu-24gb"]["fp32"]
    assert llama["gpu-80gb"]["fp32"]
    assert not any(any(row.fits.values()) for row in estimate("gpt3-175b").fits if row.target != "this-machine")


def test_cnn_presets_use_published_multiply_adds():
    e = estimate("resnet50")
    assert e.params.method == "published"
    assert e.inference.flops_per_token == 2 * 3.8e9 and e.inference.unit == "image"
    assert e.training.tokens == 600_000 * 256
    assert e.training.flops == pytest.approx(3 * 2 * 3.8e9 * 600_000 * 256)
    assert e.memory.kv_cache_bytes is None and e.memory.activation_bytes is None
    assert any("published figures" in n for n in e.notes)


def test_json_keys_other_tools_read(gpt3):
    d = to_dict(gpt3)
    assert d["schema"] == "sizewise.estimate/1" and d["kind"] == "estimate"
    assert d["params"]["total"] == gpt3.params.total
    assert set(d["memory"]["weights_bytes"]) == {"fp32", "fp16", "int8", "int4"}
    for key in ("flops", "energy_mwh", "co2e_tonnes", "cost_usd"):
        assert isinstance(d["training"][key], float), key
    assert d["training"]["cost_usd"] == pytest.approx(10_000 * 14.8 * 24 * 3.06)
    sources = {a["name"]: a["source"] for a in d["assumptions"]}
    assert "V100" in sources["v100 peak FLOP/s"] and sources["device power"] == "given"
