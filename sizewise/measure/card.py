"""The model card: what a model costs, as frozen dataclasses with units in their field names.

The JSON form (``ModelCard.to_dict``) is a versioned schema other tools read; keys promised to them:
``schema``, ``params.{total,trainable,nonzero}``, ``size.{memory_bytes,disk_bytes}``, ``flops.{total,coverage}``,
``latency.{p50_ms,p90_ms,p99_ms,runs,threads}``, ``memory.peak_rss_delta_bytes``, ``energy.{joules_per_1k,method}``,
``carbon.{gco2e_per_1k,grid_gco2_per_kwh,source}``, ``metrics.{NAME}``, ``environment``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizewise.core.serialize import from_dict, to_dict, write_json_atomic

SCHEMA = "sizewise.card/1"


@dataclass(frozen=True)
class LayerParams:
    name: str
    kind: str
    params: int
    nonzero: int
    flops: int | None = None


@dataclass(frozen=True)
class ParamStats:
    total: int  # unique parameters: a tied weight is counted once
    trainable: int
    nonzero: int
    buffers: int  # e.g. BatchNorm running statistics, position ids: stored but not learned
    tied: int  # parameters that appear under more than one name (counted once in total)
    nonfinite: int  # NaN/Inf values: measured, but flagged
    per_layer: list[LayerParams] = field(default_factory=list)


@dataclass(frozen=True)
class SizeStats:
    memory_bytes: int  # parameters + buffers as held in memory
    memory_by_dtype: dict[str, int]
    disk_bytes: int  # the artifact as sizewise saves it (what a user would ship)
    zip_bytes: int  # that artifact deflate-compressed: shows what sparsity or sharing could still save
    artifact: str  # what disk_bytes counts, e.g. "model.safetensors + config.json"


@dataclass(frozen=True)
class OpFlops:
    op: str
    calls: int
    flops: int


@dataclass(frozen=True)
class FlopStats:
    total: int  # FLOP = 2 x multiply-accumulate, one forward pass at the given input shape
    effective: int  # the same with multiply-accumulates against zero weights skipped
    coverage: float  # counted FLOPs / (counted + estimated uncounted), 0..1
    input_shape: dict[str, list[int]]
    by_op: list[OpFlops]
    uncounted: list[OpFlops]  # ops with no FLOP formula: their "flops" is an estimate of 1 FLOP per output element
    definition: str = "FLOP = 2 x multiply-accumulate (a fused multiply-add counts 2); elementwise ops are not counted"
    method: str = "torch.utils.flop_counter formulas at the aten-operator level"


@dataclass(frozen=True)
class ThroughputPoint:
    batch_size: int
    items_per_s: float
    p50_ms: float


@dataclass(frozen=True)
class LatencyStats:
    runtime: str
    batch_size: int
    threads: int
    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    sd_ms: float
    min_ms: float
    ci95_median_ms: tuple[float, float]  # distribution-free interval from order statistics
    spread: float  # (p90 - p50) / p50: how noisy the machine was
    noisy: bool
    throughput: list[ThroughputPoint] = field(default_factory=list)
    other_load_cores: float | None = None  # CPU used by other processes while timing, in cores
    cpu_ms_per_call: float | None = None  # CPU time this process used per call, all threads together


@dataclass(frozen=True)
class MemoryStats:
    peak_rss_delta_bytes: int | None  # peak resident memory of inference minus resident memory before it
    method: str
    cuda_peak_bytes: int | None = None


@dataclass(frozen=True)
class EnergyStats:
    joules_per_1k: float  # energy for 1,000 inferences at the measured batch size
    method: str  # "measured:rapl" | "measured:nvml" | "estimated:cpu-power-model"
    power_w: float
    pue: float
    assumptions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CarbonStats:
    gco2e_per_1k: float
    grid_gco2_per_kwh: float
    region: str
    source: str
    year: int | None = None


@dataclass(frozen=True)
class ModelCard:
    model: str
    params: ParamStats
    size: SizeStats
    flops: FlopStats | None
    latency: LatencyStats | None
    memory: MemoryStats | None
    energy: EnergyStats | None
    carbon: CarbonStats | None
    metrics: dict[str, Any] = field(default_factory=dict)  # scores, "examples", and "split" they were computed on
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} card (schema={data.get('schema')!r})")
        return from_dict(cls, data)

    def to_json(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> ModelCard:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
