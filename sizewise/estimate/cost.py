"""Training time, energy, CO2e and cost from a FLOP count and the hardware it would run on.

The energy model is the one Strubell et al. 2019 and Patterson et al. 2021 use, so both papers' figures come back from
their stated inputs: ``energy = devices x average power per device x hours x PUE`` and ``CO2e = energy x grid
intensity``. Power is per device; a whole system's measured draw (Strubell's 12,041.51 W for 64 V100s) divided by the
device count gives the same energy. Time is either given (``days``) or ``FLOP / (devices x peak FLOP/s x MFU)``; when
it is given, the utilization it implies is reported, which is the check that the inputs are plausible.
"""

from __future__ import annotations

import dataclasses
import math

from sizewise.core.constants import load_constants
from sizewise.estimate.config import (Assumption, EstimateConfig, default, grid_regions, hardware_table,
                                      price_table)

GIVEN = "given"


@dataclasses.dataclass(frozen=True)
class TrainingEstimate:
    tokens: float  # images for the CNN presets, see tokens_unit
    tokens_unit: str
    tokens_source: str
    flops: float
    flops_formula: str
    memory_bytes: int
    hardware: str
    hardware_name: str
    peak_flops_per_device: float
    devices: int
    devices_source: str
    min_devices_for_memory: int  # to hold weights, gradients, Adam state and activations, without offloading
    mfu: float
    mfu_source: str
    hours: float
    days: float
    device_power_w: float | None
    pue: float
    energy_kwh: float | None
    energy_mwh: float | None
    grid_intensity_g_per_kwh: float
    grid_source: str
    co2e_kg: float | None
    co2e_tonnes: float | None
    price_per_device_hour: float | None
    price_source: str | None
    cost_usd: float | None


def _given(value: float, unit: str, name: str) -> Assumption:
    return Assumption(name, value, unit, GIVEN)


def training(cfg: EstimateConfig, units: float, unit: str, units_source: str, flops: float, formula: str,
             memory_bytes: int) -> tuple[TrainingEstimate, list[Assumption], list[str]]:
    """The training part of an estimate, the constants it used, and notes on anything implausible."""
    notes: list[str] = []
    used: list[Assumption] = []
    if cfg.hardware is None:
        hw_default = default("hardware")
        used.append(Assumption("hardware", hw_default["value"], "", hw_default["source"], hw_default["year"]))
    key = cfg.hardware or default("hardware")["value"]
    hw = hardware_table()[key]
    peak = float(hw["peak_flops"]["value"])
    used.append(Assumption(f"{key} peak FLOP/s", peak, f"FLOP/s ({hw['peak_flops']['precision']})",
                           hw["peak_flops"]["source"], hw["peak_flops"]["year"]))
    device_memory = int(hw["memory_gib"]["value"] * 2**30)
    min_devices = max(1, math.ceil(memory_bytes / device_memory))
    if cfg.devices is None:
        devices, devices_source = min_devices, "assumption: the fewest devices that hold the training state"
        used.append(Assumption(f"{key} memory", hw["memory_gib"]["value"], "GiB", hw["memory_gib"]["source"],
                               hw["memory_gib"]["year"]))
    else:
        devices, devices_source = cfg.devices, GIVEN
        if devices < min_devices:
            notes.append(f"{devices} x {key} cannot hold the training state ({memory_bytes / 2**30:,.0f} GiB); "
                         f"at least {min_devices} are needed without offloading or recomputation")

    if cfg.days is not None:
        hours = cfg.days * 24
        mfu = flops / (devices * peak * hours * 3600)
        mfu_source = "implied by the given training time"
        used.append(_given(cfg.days, "days", "training time"))
        if mfu > 1:
            notes.append(f"the given {cfg.days:g} days imply {mfu:.0%} utilization of {devices} x {key}, above "
                         f"the hardware's peak: check --days, --devices, --hardware or --tokens")
    else:
        if cfg.mfu is not None:
            mfu, mfu_source = cfg.mfu, GIVEN
            used.append(_given(mfu, "fraction", "model FLOPs utilization"))
        else:
            d = default("mfu")
            mfu, mfu_source = float(d["value"]), "default in hardware.json (see assumptions)"
            used.append(Assumption("model FLOPs utilization", mfu, "fraction", d["source"], d["year"]))
        hours = flops / (devices * peak * mfu) / 3600

    power = cfg.device_power_w
    if power is None:
        power = hw["power_w"]["value"]
        used.append(Assumption(f"{key} power", power, "W per device", hw["power_w"]["source"], hw["power_w"]["year"]))
        if power is None:
            notes.append(f"no published power for {key}: energy, CO2e are n/a; pass --device-power-w W")
    else:
        used.append(_given(power, "W per device", "device power"))
    if cfg.pue is None:
        d = default("pue")
        pue = float(d["value"])
        used.append(Assumption("PUE", pue, "", d["source"], d["year"]))
    else:
        pue = cfg.pue
        used.append(_given(pue, "", "PUE"))
    energy_kwh = devices * power * hours * pue / 1000 if power is not None else None

    grid_meta = load_constants("grid_intensity")
    if cfg.grid_intensity is not None:
        grid, grid_source = cfg.grid_intensity, GIVEN
        used.append(_given(grid, "gCO2e/kWh", "grid intensity"))
    else:
        region = cfg.region or "world"
        grid = float(grid_regions()[region])
        grid_source = f"region '{region}' in grid_intensity.json, {grid_meta['_year']}"
        used.append(Assumption(f"grid intensity ({region})", grid, "gCO2e/kWh", grid_meta["_source"], grid_meta["_year"]))
    co2e_kg = energy_kwh * grid / 1000 if energy_kwh is not None else None

    price, price_source = cfg.price_per_hour, GIVEN if cfg.price_per_hour is not None else None
    if price is None and key in price_table():
        entry = price_table()[key]
        price = float(entry["value"])
        price_source = f"approximate {entry['provider'].upper()} on-demand list price, {entry['year']} (cloud_prices.json)"
        used.append(Assumption(f"{key} price", price, entry["unit"], f"approximate list price: {entry['source']}",
                               entry["year"]))
    elif price is None:
        notes.append(f"no list price for {key} in cloud_prices.json: cost is n/a; pass --price-per-hour USD")
    else:
        used.append(_given(price, "USD per device-hour", "price"))
    cost = devices * hours * price if price is not None else None

    estimate = TrainingEstimate(
        tokens=units, tokens_unit=unit, tokens_source=units_source, flops=flops, flops_formula=formula,
        memory_bytes=memory_bytes, hardware=key, hardware_name=hw["name"], peak_flops_per_device=peak,
        devices=devices, devices_source=devices_source, min_devices_for_memory=min_devices, mfu=mfu,
        mfu_source=mfu_source, hours=hours, days=hours / 24, device_power_w=power, pue=pue, energy_kwh=energy_kwh,
        energy_mwh=energy_kwh / 1000 if energy_kwh is not None else None, grid_intensity_g_per_kwh=grid,
        grid_source=grid_source, co2e_kg=co2e_kg, co2e_tonnes=co2e_kg / 1000 if co2e_kg is not None else None,
        price_per_device_hour=price, price_source=price_source, cost_usd=cost,
    )
    return estimate, used, notes
