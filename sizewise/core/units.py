"""Human-readable formatting of the quantities sizewise reports. Raw values stay in SI base units everywhere else."""

from __future__ import annotations

import math
import re


def _scaled(value: float, steps: list[tuple[float, str]], digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    for factor, suffix in steps:
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {suffix}".rstrip()
    return f"{value:.{digits}g} {steps[-1][1]}".rstrip()


def format_bytes(n: float) -> str:
    """Binary prefixes (KiB, MiB, ...), because that is what file managers and ``ls -h`` show."""
    return _scaled(n, [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")])


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str | int) -> int:
    """``"100.6MiB"``, ``"105MB"``, ``"105453856"`` -> bytes (MB = 10^6, MiB = 2^20, as ``format_bytes`` writes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if match is None or match.group(2).lower() not in _BYTE_UNITS:
            raise ValueError(f"not a size: {text!r} (write e.g. 100MB, 95.5MiB or 105453856)")
        value, unit = float(match.group(1)), match.group(2).lower()
    n = int(value * _BYTE_UNITS[unit])
    if n <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return n


def format_count(n: float) -> str:
    return _scaled(n, [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")])


def format_flops(n: float) -> str:
    return _scaled(n, [(1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"),
                       (1e3, "kFLOP"), (1, "FLOP")])


def format_seconds(s: float) -> str:
    if s is None or math.isnan(s):
        return "n/a"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def format_joules(j: float) -> str:
    return _scaled(j, [(3.6e9, "MWh"), (3.6e6, "kWh"), (3.6e3, "Wh"), (1, "J"), (1e-3, "mJ")])
