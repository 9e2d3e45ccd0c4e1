"""Energy and CO2 per 1,000 inferences (1,000 examples, whatever the batch size).

Measured where a counter exists: RAPL package energy on Linux (Intel, and AMD Zen through the same powercap files)
or NVML on NVIDIA GPUs. Otherwise estimated from a stated power model, ``threads x watts per busy core``, times the
CPU time: the card names the method and every constant, and each can be overridden. CPU time (all threads of this
process while timing), not threads x wall time, because a thread waiting for a core taken by another process burns
no energy on our behalf.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sizewise.core.constants import load_constants
from sizewise.core.errors import ConfigError
from sizewise.measure.card import CarbonStats, EnergyStats, LatencyStats
from sizewise.measure.environment import rapl_energy_files

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class EnergySettings:
    """What the power model and carbon figures assume; ``None`` means the shipped constant."""

    watts_per_core: float | None = None
    pue: float | None = None
    region: str = "world"
    grid_gco2_per_kwh: float | None = None

    def __post_init__(self) -> None:
        for name in ("watts_per_core", "pue", "grid_gco2_per_kwh"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
        if self.pue is not None and self.pue < 1:
            raise ConfigError(f"PUE is total facility power over IT power, so it is >= 1; got {self.pue}")
        regions = load_constants("grid_intensity")["regions"]
        if self.grid_gco2_per_kwh is None and self.region not in regions:
            raise ConfigError(f"unknown region '{self.region}'",
                              hint=f"known: {', '.join(sorted(regions))}; or pass --grid-intensity G (gCO2e/kWh)")


def _read_rapl_uj(files: list[str]) -> int:
    total = 0
    for f in files:
        with open(f, encoding="ascii") as fh:
            total += int(fh.read().strip())
    return total


def measure_energy(run_batch: Callable[[], object], latency: LatencyStats, settings: EnergySettings,
                   seconds: float = 2.0) -> EnergyStats:
    power = load_constants("power")
    pue = settings.pue if settings.pue is not None else power["pue"]["value"]
    per_item_s = latency.mean_ms / 1e3 / latency.batch_size
    files = rapl_energy_files()
    if files:
        calls, start_uj, start = 0, _read_rapl_uj(files), time.perf_counter()
        with torch.inference_mode():
            while time.perf_counter() - start < seconds:
                run_batch()
                calls += 1
        used_uj, elapsed = _read_rapl_uj(files) - start_uj, time.perf_counter() - start
        if used_uj > 0:  # the counter wraps around; a negative difference means it did and we cannot trust it
            joules_per_item = used_uj / 1e6 / (calls * latency.batch_size)
            return EnergyStats(joules_per_1k=joules_per_item * 1000 * pue, method="measured:rapl",
                               power_w=used_uj / 1e6 / elapsed, pue=pue,
                               assumptions={"scope": "whole CPU package(s), including other processes' load"})
    watts_per_core = settings.watts_per_core
    source = "--watts-per-core"
    if watts_per_core is None:
        watts_per_core, source = power["cpu_watts_per_core"]["value"], power["cpu_watts_per_core"]["source"]
    if latency.cpu_ms_per_call is not None:
        cpu_s_per_item = latency.cpu_ms_per_call / 1e3 / latency.batch_size
        model = "CPU-seconds of this process x watts per busy core"
    else:  # no CPU-time reading: assume every thread was busy for the whole mean latency
        cpu_s_per_item = per_item_s * latency.threads
        model = "threads x mean latency x watts per busy core"
    return EnergyStats(
        joules_per_1k=watts_per_core * cpu_s_per_item * 1000 * pue,
        method="estimated:cpu-power-model",
        power_w=watts_per_core * cpu_s_per_item / per_item_s if per_item_s else 0.0,
        pue=pue,
        assumptions={"model": model, "watts_per_core": watts_per_core, "watts_per_core_source": source,
                     "threads": latency.threads, "cpu_seconds_per_1k": cpu_s_per_item * 1000,
                     "why": "no readable RAPL/NVML energy counter on this machine"},
    )


def carbon_for(energy: EnergyStats, settings: EnergySettings) -> CarbonStats:
    grid = load_constants("grid_intensity")
    if settings.grid_gco2_per_kwh is not None:
        intensity, region, source, year = settings.grid_gco2_per_kwh, "user", "--grid-intensity", None
    else:
        intensity, region = grid["regions"][settings.region], settings.region
        source, year = grid["_source"], grid["_year"]
    return CarbonStats(gco2e_per_1k=energy.joules_per_1k / JOULES_PER_KWH * intensity, grid_gco2_per_kwh=intensity,
                       region=region, source=source, year=year)
