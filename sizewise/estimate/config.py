"""The inputs of an estimate, validated where they are made, and the constants they are looked up in.

Every default that is not a user input comes from ``sizewise/core/constants`` (hardware.json, cloud_prices.json,
grid_intensity.json) with its source and year, and every one can be overridden here; the estimate lists the ones it used.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from sizewise.core.constants import load_constants
from sizewise.core.errors import ConfigError


HERE = "here"  # --bandwidth here: measure this machine's read bandwidth
_BANDWIDTH_HINT = ("give GB/s (1e9 bytes/s), e.g. --bandwidth 50, or --bandwidth here to measure this machine's read "
                   "bandwidth")


def parse_bandwidth(value: Any) -> float | str | None:
    """``--bandwidth``: a positive number of GB/s (a number or its text), or ``"here"``; anything else is a one-line
    ConfigError naming the value."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == HERE:
            return HERE
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"bandwidth must be a number of GB/s or 'here', got {value.strip()!r}",
                              hint=_BANDWIDTH_HINT) from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"bandwidth must be a number of GB/s or 'here', got {value!r}", hint=_BANDWIDTH_HINT)
    else:
        number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"bandwidth must be a positive number of GB/s, got {str(value).strip()}",
                          hint=_BANDWIDTH_HINT)
    return number


def hardware_table() -> dict[str, Any]:
    return load_constants("hardware")["accelerators"]


def memory_targets() -> dict[str, Any]:
    return load_constants("hardware")["memory_targets"]


def default(name: str) -> dict[str, Any]:
    """An assumption from hardware.json's ``defaults``: ``{"value", "source", "year"}``."""
    return load_constants("hardware")["defaults"][name]


def price_table() -> dict[str, Any]:
    return load_constants("cloud_prices")["prices"]


def grid_regions() -> dict[str, float]:
    return load_constants("grid_intensity")["regions"]


def _unknown(kind: str, value: str, known: list[str], flag: str) -> ConfigError:
    close = difflib.get_close_matches(value, known, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown {kind} '{value}'",
                       hint=f"{guess}known: {', '.join(sorted(known))}; or pass {flag}")


@dataclasses.dataclass(frozen=True)
class EstimateConfig:
    """What to estimate and under which assumptions. ``None`` means "use the labelled default"."""

    model: str
    tokens: float | None = None  # training tokens (images for the CNN presets); default: the paper's, else 20/param
    batch: int = 1
    seq_len: int | None = None  # default: the model's context length
    hardware: str | None = None  # key of hardware.json "accelerators"
    devices: int | None = None  # default: the fewest that hold the training state
    days: float | None = None  # wall-clock training time; exclusive with mfu
    mfu: float | None = None  # model FLOPs utilization, 0-1
    device_power_w: float | None = None  # average draw per device, W
    pue: float | None = None
    region: str | None = None  # key of grid_intensity.json "regions"; exclusive with grid_intensity
    grid_intensity: float | None = None  # gCO2e per kWh
    price_per_hour: float | None = None  # USD per device-hour
    # decode roofline: GB/s (1e9 bytes/s), or "here" (measured by the caller); default: the hardware's, if published
    bandwidth: float | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a preset name, config.json path or model reference, got {self.model!r}")
        self._positive("tokens", strict=True)
        self._integer("batch", required=True)
        self._integer("seq_len")
        self._integer("devices")
        self._positive("days", strict=True)
        self._positive("device_power_w", strict=True)
        self._positive("grid_intensity", strict=False)
        self._positive("price_per_hour", strict=False)
        object.__setattr__(self, "bandwidth", parse_bandwidth(self.bandwidth))
        if self.mfu is not None:
            self._number("mfu")
            if not 0 < self.mfu <= 1:
                raise ConfigError(f"mfu must be a fraction in (0, 1], got {self.mfu}",
                                  hint="e.g. 0.4 for 40% model FLOPs utilization")
        if self.pue is not None:
            self._number("pue")
            if self.pue < 1:
                raise ConfigError(f"pue must be >= 1 (facility power / IT power), got {self.pue}",
                                  hint="1.0 is the machine alone; data centres run about 1.1-1.6")
        if self.days is not None and self.mfu is not None:
            raise ConfigError(f"give either days ({self.days}) or mfu ({self.mfu}), not both",
                              hint="days fixes the training time; mfu derives it from the hardware's peak FLOP/s")
        if self.region is not None and self.grid_intensity is not None:
            raise ConfigError(f"give either region ({self.region!r}) or grid_intensity ({self.grid_intensity}), not both")
        if self.hardware is not None:
            object.__setattr__(self, "hardware", self.hardware.strip().lower())
            if self.hardware not in hardware_table():
                raise _unknown("hardware", self.hardware, list(hardware_table()), "--device-power-w and --mfu/--days")
        if self.region is not None:
            object.__setattr__(self, "region", self.region.strip().lower())
            if self.region not in grid_regions():
                raise _unknown("region", self.region, list(grid_regions()), "--grid-intensity G (gCO2e/kWh)")

    def _number(self, name: str) -> float:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return value

    def _positive(self, name: str, strict: bool) -> None:
        if getattr(self, name) is None:
            return
        value = self._number(name)
        if value < 0 or (strict and value == 0):
            raise ConfigError(f"{name} must be {'> 0' if strict else '>= 0'}, got {value:g}",
                              hint=f"pass a {'positive' if strict else 'non-negative'} {name.replace('_', ' ')}")

    def _integer(self, name: str, required: bool = False) -> None:
        value = getattr(self, name)
        if value is None and not required:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}",
                              hint="use 1 or more")


@dataclasses.dataclass(frozen=True)
class Assumption:
    """One constant an estimate used, and where it comes from, so a reader can check or override it."""

    name: str
    value: Any
    unit: str
    source: str
    year: int | None = None
