"""How fast a causal LM could decode: the memory-bandwidth roofline, an upper bound estimated from bytes alone.

Generating with a key/value cache is memory-bound: each decode step reads every weight and the whole KV cache once,
the same definition ``sizewise measure`` uses for the roofline it sets beside a measured decode
(:mod:`sizewise.measure.llm`). At a read bandwidth of B bytes/s::

    bytes per step   = weight bytes + KV cache bytes (at batch x context)
    roofline tokens/s = batch x B / bytes per step

This is an estimate and an upper bound, never a measurement: compute, kernel launches, framework overhead,
activations and the logits are left out, and real kernels reach only part of the bandwidth (``sizewise measure``
reports that fraction on a real model). Bytes per step are the memory table's inference bytes: weights at
fp32/fp16/int8/int4 plus the KV cache in fp16 (fp32 for fp32 weights). Only decoder-only models get a figure: an
encoder does not decode token by token, and an encoder-decoder's step reads its decoder alone, which the parameter
count does not separate.

The bandwidth is, in this order: a number the user gives (GB/s, 1e9 bytes/s), a measurement of this machine (the
caller hands in the function that measures, since estimate imports sizewise.core only), or the ``memory_bandwidth``
of the accelerator in hardware.json. Where none is known the estimate says so instead of inventing one.
"""

from __future__ import annotations

from collections.abc import Callable

import dataclasses

from sizewise.core.errors import ConfigError
from sizewise.estimate.compute import MemoryEstimate
from sizewise.estimate.config import HERE, Assumption, EstimateConfig, default, hardware_table
from sizewise.estimate.params import Architecture

GB = 1e9  # --bandwidth is in GB/s, decimal like the vendors' datasheets
FORMULA = ("tokens/s = batch x bandwidth / bytes per step; bytes per step = weights + KV cache, each read once per "
           "decode step")
CAVEAT = ("upper bound, not a measurement: compute, kernel and framework overhead, activations and logits are "
          "ignored, and real kernels reach only part of the bandwidth")

# measures this machine's read bandwidth: (bytes/s, how it was measured)
BandwidthMeter = Callable[[], tuple[float, str]]


@dataclasses.dataclass(frozen=True)
class DecodeEstimate:
    applies: bool  # False for encoders, CNNs, encoder-decoders and unknown layer sizes: see reason
    reason: str  # why there is no figure; "" when there is one
    batch: int
    context: int | None  # tokens in the KV cache at the step (seq_len)
    bandwidth_bytes_per_s: float | None  # None: unknown, then tokens_per_s is None
    bandwidth_source: str
    bytes_per_step: dict[str, int] | None  # precision -> weights + KV cache (fp32 cache for fp32, fp16 otherwise)
    kv_cache_bytes: dict[str, int] | None  # precision -> the KV cache part of bytes_per_step
    tokens_per_s: dict[str, float] | None  # precision -> batch x bandwidth / bytes per step
    kind: str = "estimate (upper bound): memory-bandwidth roofline"
    formula: str = FORMULA
    caveat: str = CAVEAT


def not_applicable(arch: Architecture, memory: MemoryEstimate) -> str | None:
    """Why the roofline does not apply to this model, or None when it does."""
    if arch.family == "encoder":
        return "n/a: an encoder reads its whole input in one pass; it does not decode token by token"
    if arch.family == "cnn":
        return "n/a: not a token-by-token decoder"
    if arch.family == "encoder-decoder":
        return ("n/a for encoder-decoder models: a decode step reads the decoder's weights only, which this estimate "
                "does not count apart from the encoder's")
    if memory.kv_cache_bytes is None:
        return "n/a: the layer sizes or the context are unknown, so the KV cache is unknown"
    return None


def _check_meter(cfg: EstimateConfig, measure: BandwidthMeter | None) -> None:
    if cfg.bandwidth == HERE and measure is None:
        raise ConfigError("bandwidth 'here' needs a measurement, which sizewise.estimate.estimate cannot make",
                          hint="call sizewise.estimate(...) or `sizewise estimate --bandwidth here`, which measure "
                               "it, or pass a number of GB/s")


def resolve_bandwidth(cfg: EstimateConfig, measure: BandwidthMeter | None) -> tuple[float | None, str,
                                                                                   list[Assumption]]:
    """(bytes/s or None, where it came from, the assumption it adds)."""
    if isinstance(cfg.bandwidth, float):
        value = cfg.bandwidth * GB
        source = f"given: --bandwidth {cfg.bandwidth:g}"
        return value, source, [Assumption("memory read bandwidth", value, "bytes/s", "given")]
    if cfg.bandwidth == HERE:
        _check_meter(cfg, measure)
        value, how = measure()
        source = f"measured here: {how}"
        return value, source, [Assumption("memory read bandwidth", value, "bytes/s", source)]
    key = cfg.hardware or default("hardware")["value"]
    chosen = "--hardware" if cfg.hardware else "the default hardware"
    entry = hardware_table()[key].get("memory_bandwidth") or {}
    if entry.get("value") is None:
        return None, (f"bandwidth unknown: hardware.json has no memory bandwidth for {key} ({chosen}); pass "
                      "--bandwidth GB/s or --bandwidth here"), []
    value = float(entry["value"])
    source = f"{key}, {chosen}, in hardware.json: {entry['source']} ({entry['year']})"
    return value, source, [Assumption(f"{key} memory bandwidth", value, "bytes/s", entry["source"], entry["year"])]


def decode(cfg: EstimateConfig, arch: Architecture, memory: MemoryEstimate,
           measure: BandwidthMeter | None = None) -> tuple[DecodeEstimate, list[Assumption], list[str]]:
    """The decode roofline per precision, the constants it used, and notes (an unknown bandwidth)."""
    _check_meter(cfg, measure)  # an impossible input fails whatever the model
    reason = not_applicable(arch, memory)
    if reason is not None:  # nothing is measured for a model the roofline does not apply to
        return (DecodeEstimate(False, reason, memory.batch, memory.seq_len, None, "", None, None, None), [], [])
    bandwidth, source, used = resolve_bandwidth(cfg, measure)
    kv = {p: memory.kv_cache_bytes * (2 if p == "fp32" else 1) for p in memory.weights_bytes}
    per_step = {p: w + kv[p] for p, w in memory.weights_bytes.items()}
    tokens = None if bandwidth is None else {p: memory.batch * bandwidth / b for p, b in per_step.items()}
    notes = [] if bandwidth is not None else [f"decode tokens/s is n/a; {source}"]
    return (DecodeEstimate(True, "", memory.batch, memory.seq_len, bandwidth, source, per_step, kv, tokens),
            used, notes)
