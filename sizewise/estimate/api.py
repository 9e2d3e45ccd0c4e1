"""``estimate(model, ...)``: what a model too large to run here would cost to store, serve and train.

Composes the pieces: resolve the model and count its parameters (:mod:`.params`), memory and FLOPs (:mod:`.compute`),
the decode bandwidth roofline (:mod:`.decode`), time, energy, CO2e and cost (:mod:`.cost`). The result is one frozen
dataclass whose JSON form (``"schema": "sizewise.estimate/1"``) other tools read; every constant it used is listed in
``assumptions``.
"""

from __future__ import annotations

from collections.abc import Callable

import dataclasses
import datetime as _dt
from typing import Any

from sizewise.estimate import compute, cost, decode
from sizewise.estimate.config import Assumption, EstimateConfig, default
from sizewise.estimate.params import Architecture, ParamCount, resolve_model

SCHEMA = "sizewise.estimate/1"


@dataclasses.dataclass(frozen=True)
class Estimate:
    schema: str
    kind: str
    model: str
    description: str
    created: str  # UTC, ISO 8601
    config: EstimateConfig
    params: ParamCount
    architecture: Architecture
    memory: compute.MemoryEstimate
    inference: compute.InferenceEstimate
    decode: decode.DecodeEstimate  # upper-bound decode tokens/s of a causal LM; applies False (with reason) otherwise
    training: cost.TrainingEstimate
    fits_overhead: float  # fraction added to the weights before comparing with device memory
    fits: tuple[compute.FitRow, ...]
    assumptions: tuple[Assumption, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        from sizewise.core.serialize import to_dict

        return to_dict(self)


def estimate(model: str | EstimateConfig, load_model: Callable[[str], Any] | None = None,
             measure_bandwidth: decode.BandwidthMeter | None = None, **options: Any) -> Estimate:
    """Estimate ``model`` (a preset, a config.json, or a model reference that ``load_model`` loads) under
    ``options`` (see EstimateConfig). ``sizewise.estimate`` passes sizewise's loader and, for ``bandwidth="here"``,
    the function that measures this machine's read bandwidth: both live in layers this package may not import."""
    cfg = model if isinstance(model, EstimateConfig) else EstimateConfig(model=model, **options)
    if isinstance(model, EstimateConfig) and options:
        cfg = dataclasses.replace(model, **options)
    resolved = resolve_model(cfg.model, load_model)
    params, arch, preset = resolved.params, resolved.architecture, resolved.preset
    notes = list(resolved.notes)
    seq_len = cfg.seq_len or arch.context
    if cfg.seq_len and arch.context and cfg.seq_len > arch.context:
        notes.append(f"seq_len {cfg.seq_len} exceeds the model's context of {arch.context} positions")

    memory = compute.memory(params, arch, cfg.batch, seq_len)
    inference = compute.inference_flops(params, arch, seq_len, preset)
    units, unit, units_source = compute.training_units(params, preset, cfg.tokens)
    flops, formula = compute.training_flops(params, arch, units, inference)
    training, used, training_notes = cost.training(cfg, units, unit, units_source, flops, formula,
                                                   memory.training_bytes)
    fits, overhead = compute.fits(memory.weights_bytes)
    decoding, decode_used, decode_notes = decode.decode(cfg, arch, memory, measure_bandwidth)
    notes += training_notes + decode_notes
    if memory.activation_bytes is None:
        notes.append("activation memory is n/a for this model: training memory counts the 16 bytes/param state only")

    overhead_src = default("inference_overhead")
    assumptions = [
        Assumption("parameter count", params.total, "parameters", f"{params.method}: {params.detail}"),
        Assumption(f"training {unit}s", units, unit + "s", units_source),
        Assumption("training state", compute.TRAINING_BYTES_PER_PARAM, "bytes/param",
                   "mixed-precision Adam: fp16 weights+grads, fp32 master weights and two moments "
                   "(Rajbhandari et al. 2020, ZeRO)", 2020),
        Assumption("activations", "L*s*b*h*(34+5*a*s/h)", "bytes",
                   "16-bit activations, no recomputation (Korthikanti et al. 2022)", 2022),
        Assumption("KV cache precision", 2, "bytes/value", "fp16 cache (fp32 for fp32 inference)"),
        Assumption("fits overhead", overhead, "fraction of weights", overhead_src["source"], overhead_src["year"]),
        *used,
        *decode_used,
    ]
    return Estimate(
        schema=SCHEMA, kind="estimate", model=resolved.name, description=resolved.description,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(), config=cfg, params=params,
        architecture=arch, memory=memory, inference=inference, decode=decoding, training=training,
        fits_overhead=overhead, fits=tuple(fits), assumptions=tuple(assumptions), notes=tuple(notes),
    )
