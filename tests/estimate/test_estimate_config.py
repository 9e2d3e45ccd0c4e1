"""Impossible inputs fail where they are made, with one line that names the value and the fix."""

import pytest

from sizewise.core.errors import ConfigError
from sizewise.estimate import EstimateConfig, estimate


@pytest.mark.parametrize("kwargs,message", [
    ({"tokens": -5}, "tokens must be > 0, got -5"),
    ({"tokens": 0}, "tokens must be > 0, got 0"),
    ({"devices": 0}, "devices must be a whole number >= 1, got 0"),
    ({"batch": 0}, "batch must be a whole number >= 1, got 0"),
    ({"seq_len": 2.5}, "seq_len must be a whole number >= 1, got 2.5"),
    ({"days": -1}, "days must be > 0, got -1"),
    ({"mfu": 1.5}, r"mfu must be a fraction in \(0, 1\], got 1.5"),
    ({"pue": 0.9}, "pue must be >= 1"),
    ({"grid_intensity": -1}, "grid_intensity must be >= 0, got -1"),
    ({"tokens": float("nan")}, "tokens must be a finite number"),
    ({"days": 3, "mfu": 0.4}, "give either days .* or mfu .*, not both"),
    ({"region": "france", "grid_intensity": 50}, "give either region .* or grid_intensity .*, not both"),
])
def test_bad_values_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EstimateConfig(model="gpt2", **kwargs)


def test_unknown_hardware_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown hardware 'v10'") as info:
        EstimateConfig(model="gpt2", hardware="v10")
    assert "did you mean 'v100'" in info.value.hint


def test_unknown_region_lists_known():
    with pytest.raises(ConfigError, match="unknown region 'atlantis'") as info:
        EstimateConfig(model="gpt2", region="atlantis")
    assert "france" in info.value.hint and "--grid-intensity" in info.value.hint


def test_names_are_normalized():
    cfg = EstimateConfig(model="gpt2", hardware=" V100 ", region="France")
    assert (cfg.hardware, cfg.region) == ("v100", "france")


def test_zero_grid_intensity_and_price_are_allowed():
    e = estimate("gpt2", grid_intensity=0, price_per_hour=0)
    assert e.training.co2e_kg == 0 and e.training.cost_usd == 0


def test_hardware_without_power_says_so_and_energy_is_na():
    e = estimate("gpt2", hardware="tpu-v3")
    assert e.training.energy_kwh is None and e.training.co2e_tonnes is None
    assert any("no published power for tpu-v3" in n and "--device-power-w" in n for n in e.notes)
    e = estimate("gpt2", hardware="tpu-v3", device_power_w=200)
    assert e.training.energy_kwh > 0


def test_too_few_devices_and_impossible_days_are_noted():
    e = estimate("gpt3-175b", hardware="v100", devices=8, days=1)
    assert any("8 x v100 cannot hold the training state" in n for n in e.notes)
    assert any("above the hardware's peak" in n for n in e.notes)


def test_no_price_for_hardware_says_how_to_give_one():
    e = estimate("gpt2", hardware="rtx-4090")
    assert e.training.cost_usd is None
    assert any("--price-per-hour" in n for n in e.notes)
