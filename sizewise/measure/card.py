"""The model card: what a model costs, as frozen dataclasses with units in their field names.

The JSON form (``ModelCard.to_dict``) is a versioned schema other tools read; keys promised to them:
``schema``, ``params.{total,trainable,nonzero}``, ``size.{memory_bytes,disk_bytes}``, ``flops.{total,coverage}``,
``latency.{p50_ms,p90_ms,p99_ms,runs,threads}``, ``memory.peak_rss_delta_bytes``, ``energy.{joules_per_1k,method}``,
``carbon.{gco2e_per_1k,grid_gco2_per_kwh,source}``, ``metrics.{NAME}``, ``environment``; for causal LMs
``llm.{prompt_tokens,new_tokens,weights_bytes}``, ``llm.generation[].{batch_size,ttft_p50_ms,roofline_fraction}``,
``llm.generation[].{prefill,decode}.tokens_per_s``, ``llm.generation[].kv_cache.bytes``,
``llm.flops_per_token.{analytic,measured}``, ``llm.bandwidth.bytes_per_s``,
``llm.perplexity.{token_perplexity,word_perplexity,bits_per_byte,tokens_scored,context_tokens,stride_tokens,split}``
(``llm`` is null for other models, and in cards written before it existed).
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
    zip_bytes: int  # that artifact deflate-compressed (level 9; level 1 above 64 MiB): what sparsity or sharing could still save
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
    # causal LMs: the key/value cache at batch 1 after prompt + new tokens (formula in llm.generation[0].kv_cache),
    # and the weights it sits beside
    kv_cache_bytes: int | None = None
    kv_cache_context_tokens: int | None = None
    weights_bytes: int | None = None


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
class PerplexityStats:
    """Perplexity with its definition, comparable with lm-evaluation-harness (word level, bits per byte) and the HF
    sliding-window recipe (token level)."""

    split: str  # the split it was computed on: validation for decisions, test for reported numbers
    token_perplexity: float
    word_perplexity: float
    bits_per_byte: float
    nll_sum_nats: float
    tokens_scored: int
    text_tokens: int  # tokens of the scored text, without the prefix token
    words: int  # whitespace-separated words of the scored text
    utf8_bytes: int
    context_tokens: int
    stride_tokens: int
    windows: int
    prefix_token: str | None  # put before the text so its first token is scored; None: the first token is not
    truncated: bool  # True: the text was cut at max_tokens, so this is not the whole split's perplexity
    max_tokens: int | None
    texts: int  # lines or paragraphs of the split, joined with `joiner`
    joiner: str = "\n"
    definition: str = ("token perplexity = exp(sum of NLL / tokens scored): the texts joined, tokenized once, a window "
                       "of context tokens advanced by stride, each window scoring only its tokens no earlier window "
                       "scored; word perplexity = exp(sum of NLL / whitespace-separated words); bits per byte = sum "
                       "of NLL / (ln 2 x UTF-8 bytes)")


@dataclass(frozen=True)
class ThroughputStats:
    tokens_per_call: int  # prefill: batch x prompt tokens per forward; decode: batch (one token per sequence) per step
    calls: int  # timed calls: prefill forwards, or decode steps of all runs together
    p50_ms: float  # median time of one call
    ci95_p50_ms: tuple[float, float]
    tokens_per_s: float  # tokens_per_call / median call time
    ci95_tokens_per_s: tuple[float, float]


@dataclass(frozen=True)
class KvCacheStats:
    context_tokens: int
    batch_size: int
    layers: int
    kv_heads: int
    attention_heads: int
    head_dim: int
    bytes_per_element: int
    bytes: int  # the formula's value
    measured_bytes: int | None = None  # the model's own cache after generating to context_tokens
    formula: str = "2 (K and V) x layers x kv_heads x head_dim x context x batch x bytes per element"


@dataclass(frozen=True)
class GenerationStats:
    """Greedy generation of new_tokens after a prompt_tokens prompt at one batch size, timed run by run."""

    batch_size: int
    runs: int
    warmup: int
    prefill: ThroughputStats  # the prompt's forward pass (+ choosing token 1): every run's time to first token
    decode: ThroughputStats  # one-token steps with the KV cache (tokens 2..N): every step timed
    ttft_p50_ms: float  # time to first token: prefill forward + greedy choice of token 1
    ttft_ci95_ms: tuple[float, float]
    generation_p50_ms: float  # prompt in to the last of the N tokens out
    kv_cache: KvCacheStats  # after the last token: prompt + new tokens - 1 (the keys the last step attended to)
    bytes_per_step: int  # read per decode step: weights + KV cache
    roofline_tokens_per_s: float | None  # batch x read bandwidth / bytes per step
    roofline_fraction: float | None  # measured decode tokens/s / roofline
    energy: EnergyStats | None = None  # joules_per_1k here is per 1,000 generated (decode) tokens
    carbon: CarbonStats | None = None  # per 1,000 generated tokens
    other_load_cores: float | None = None


@dataclass(frozen=True)
class FlopsPerTokenStats:
    context_tokens: int  # the attention term is at this context (the prompt length)
    non_embedding_params: int  # all parameters but the token and position embedding tables
    tied_unembedding_params: int  # hidden x vocab when the output projection reuses the input embedding, else 0
    layers: int
    attention_width: int  # heads x head_dim
    analytic: int  # FLOPs per token, from the formula
    measured: float | None  # one forward at context_tokens counted (see FlopStats) / context_tokens
    measured_coverage: float | None
    formula: str = ("2 x (non-embedding params + tied unembedding) + 2 x 2 x layers x context x attention width "
                    "(QK^T and AV, full square as the kernels compute it); FLOP = 2 x multiply-accumulate")


@dataclass(frozen=True)
class BandwidthStats:
    bytes_per_s: float  # median over runs
    ci95_bytes_per_s: tuple[float, float]
    buffer_bytes: int
    last_level_cache_bytes: int | None
    runs: int
    threads: int
    device: str
    method: str = "torch.sum over a float32 buffer at least 4x the last-level cache; buffer bytes / median time"
    other_load_cores: float | None = None  # CPU other processes used meanwhile: memory bandwidth is shared with them


@dataclass(frozen=True)
class LLMStats:
    prompt_tokens: int
    new_tokens: int
    threads: int
    device: str
    dtype: str
    weights_bytes: int  # parameters as held in memory, each tied tensor once
    flops_per_token: FlopsPerTokenStats
    generation: list[GenerationStats]  # batch 1, then the larger batch
    bandwidth: BandwidthStats | None
    perplexity: PerplexityStats | None = None
    decoding: str = ("greedy (argmax), no sampling: one prefill forward of the prompt, then new_tokens - 1 one-token "
                     "forwards reusing the KV cache, as model.generate(do_sample=False) does")
    roofline: str = ("decode reads every weight (but one row of an input embedding that is not the output matrix) and "
                     "the whole KV cache once per step: roofline tokens/s = batch x read bandwidth / (those bytes + "
                     "KV cache bytes after the last step)")


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
    llm: LLMStats | None = None  # causal LMs: perplexity, tokens/s, KV cache, roofline
    notes: list[str] = field(default_factory=list)  # how the model was loaded (pad token, dequantized from GGUF, ...)

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
